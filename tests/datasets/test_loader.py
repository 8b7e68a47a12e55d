import pytest
import torch
from torch.utils.data import DistributedSampler

from stvit_video.datasets import BadVideoCounter, construct_loader, set_loader_epoch
from stvit_video.datasets.loader import ShardSampler

BAD_NAMES = ["missing", "empty", "garbage", "truncated", "corrupt_mid"]


@pytest.mark.parametrize("num_items", [0, 1, 10, 63])
def test_shard_sampler_covers_every_item_once_without_padding(num_items):
    shards = [list(ShardSampler(num_items, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(num_items))
    assert [len(ShardSampler(num_items, 3, r)) for r in range(3)] == [len(s) for s in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError):
        ShardSampler(num_items, 3, 3)


def test_test_loaders_of_three_ranks_see_each_view_once(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["lossless"], 0), (videos["audio"], 1)]), "TEST.BATCH_SIZE", 3)
    seen = []
    for rank in range(3):
        loader = construct_loader(cfg, "test", num_replicas=3, rank=rank)
        assert isinstance(loader.sampler, ShardSampler) and loader.batch_size == 1
        for batch in loader:
            seen += list(zip(batch.video_index.tolist(), batch.view_index.tolist()))
    assert sorted(seen) == [(v, k) for v in range(2) for k in range(9)]


def test_train_loader_is_distributed_and_reshuffles(videos, small_cfg, write_lists):
    rows = [(videos["lossless"], i) for i in range(8)]
    loader = construct_loader(small_cfg(write_lists(rows)), "train", num_replicas=2, rank=1)
    assert isinstance(loader.sampler, DistributedSampler) and loader.drop_last
    assert loader.batch_size == 2  # global 4 over 2 ranks
    set_loader_epoch(loader, 0)
    first = list(loader.sampler)
    set_loader_epoch(loader, 1)
    assert list(loader.sampler) != first and len(first) == 4


def test_same_seed_same_batches_with_two_workers(videos, small_cfg, write_lists):
    rows = [(videos[n], i) for i, n in enumerate(["lossless", "h264", "audio", "tiny"])]

    def first_batch(seed):
        torch.manual_seed(123)  # the global generator must not matter
        cfg = small_cfg(write_lists(rows), "RNG_SEED", seed, "DATA_LOADER.NUM_WORKERS", 2,
                        "DATA_LOADER.PERSISTENT_WORKERS", False)
        batch = next(iter(construct_loader(cfg, "train")))
        return batch.video_index.tolist(), batch.frames

    (a_idx, a), (b_idx, b), (c_idx, c) = first_batch(1), first_batch(1), first_batch(2)
    assert a_idx == b_idx and torch.equal(a, b)
    assert a_idx != c_idx or not torch.equal(a, c)


def test_two_decord_workers_train_count_bad_videos(videos, small_cfg, write_lists):
    rows = [(videos[n], i) for i, n in enumerate(["lossless", "h264", "audio"])]
    rows += [(videos[n], 3 + i) for i, n in enumerate(BAD_NAMES)]
    cfg = small_cfg(write_lists(rows), "DATA_LOADER.NUM_WORKERS", 2, "DATA.SAMPLING_RATE", 8,
                    "DATA_LOADER.NUM_RETRIES", 6, "DATA.DECODING_BACKEND", "decord")
    loader = construct_loader(cfg, "train")
    assert loader.num_workers == 2 and loader.persistent_workers
    counter = BadVideoCounter(loader.dataset)
    for epoch in range(2):
        set_loader_epoch(loader, epoch)
        counter.reset()
        batches = list(loader)
        assert len(batches) == 2  # 8 videos, 4 per batch
        for batch in batches:
            counter.update(batch)
            assert batch.frames.shape == (4, 3, 8, 56, 56) and not batch.failed.any()
            assert set(batch.video_index.tolist()) <= {0, 1, 2}
            assert batch.labels.tolist() == batch.video_index.tolist()
        # every bad row is requested once per epoch, in whichever worker: all 5 are counted
        assert counter.count == 5, counter.summary()
        assert counter.paths() == [str(videos[n]) for n in BAD_NAMES]


def test_two_workers_test_loader_carries_failed_flags(videos, small_cfg, write_lists):
    rows = [(videos["h264"], 0), (videos["empty"], 1), (videos["fps25"], 2)]
    cfg = small_cfg(write_lists(rows), "DATA_LOADER.NUM_WORKERS", 2, "DATA.DECODING_BACKEND", "decord")
    loader = construct_loader(cfg, "test")
    counter = BadVideoCounter(loader.dataset)
    failed = {}
    for batch in loader:
        counter.update(batch)
        for video, view, flag in zip(batch.video_index.tolist(), batch.view_index.tolist(), batch.failed.tolist()):
            failed[(video, view)] = flag
    assert sorted(failed) == [(v, k) for v in range(3) for k in range(9)]
    assert all(flag == (video == 1) for (video, _), flag in failed.items())
    assert counter.failed_views == 9 and counter.paths() == [str(videos["empty"])]
