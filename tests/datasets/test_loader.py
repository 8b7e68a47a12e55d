import logging

import pytest
import torch

from stvit_video.datasets import BadVideoCounter, construct_loader, set_loader_epoch
from stvit_video.datasets.loader import ShardSampler, TrainSampler

from tests.helpers.counting_opener import CountingOpener

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
        # 1 view per rank is fewer than the 3 crops of a clip: one whole clip per batch
        assert isinstance(loader.sampler, ShardSampler) and loader.batch_size == 1
        for batch in loader:
            seen += list(zip(batch.video_index.tolist(), batch.view_index.tolist()))
    assert sorted(seen) == [(v, k) for v in range(2) for k in range(9)]


def test_test_batches_count_views_and_flatten_crops_in_order(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["lossless"], 0), (videos["audio"], 1)]), "TEST.BATCH_SIZE", 6)
    loader = construct_loader(cfg, "test")
    assert loader.batch_size == 2  # 6 views per batch = 2 clips x 3 crops
    batches = list(loader)
    assert len(batches) == 3  # 2 videos x 3 clips = 6 items
    batch = batches[1]  # items 2 and 3: clip 2 of video 0, clip 0 of video 1
    assert batch.frames.shape == (6, 3, 8, 56, 56) and batch.frames.dtype == torch.uint8
    assert batch.video_index.tolist() == [0, 0, 0, 1, 1, 1] and batch.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.view_index.tolist() == [6, 7, 8, 0, 1, 2]  # clip * num_crops + crop
    assert not batch.failed.any() and batch.bad_reasons == () and batch.failure_reasons() == {}


def test_train_loader_is_sharded_and_reshuffles(videos, small_cfg, write_lists):
    rows = [(videos["lossless"], i) for i in range(8)]
    loader = construct_loader(small_cfg(write_lists(rows)), "train", num_replicas=2, rank=1)
    assert isinstance(loader.sampler, TrainSampler) and loader.drop_last
    assert loader.batch_size == 2  # global 4 over 2 ranks
    set_loader_epoch(loader, 0)
    first = list(loader.sampler)
    set_loader_epoch(loader, 1)
    assert list(loader.sampler) != first and len(first) == 4


@pytest.mark.parametrize("num_items, ranks", [(8, 2), (7, 2), (10, 3)])
def test_train_shards_are_disjoint_equal_and_cover_every_item(num_items, ranks):
    shards = []
    for rank in range(ranks):
        sampler = TrainSampler(num_items, num_replicas=ranks, rank=rank, seed=5)
        sampler.set_epoch(3)
        shards.append([index for index, _ in sampler])
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    padded = -(-num_items // ranks) * ranks
    flat = [i for s in shards for i in s]
    assert sorted(set(flat)) == list(range(num_items)) and len(flat) == padded
    if padded == num_items:
        assert len(set(flat)) == num_items  # disjoint when nothing is padded


def test_train_sampler_resumes_inside_an_epoch_with_the_same_items_and_seeds():
    full = TrainSampler(9, num_replicas=1, rank=0, seed=1)
    full.set_epoch(2)
    resumed = TrainSampler(9, num_replicas=1, rank=0, seed=1)
    resumed.set_epoch(2, start=4)
    assert list(resumed) == list(full)[4:] and len(resumed) == 5
    other_epoch = TrainSampler(9, seed=1)
    other_epoch.set_epoch(3)
    assert list(other_epoch) != list(full)


def test_a_position_is_the_same_sample_whatever_the_number_of_ranks():
    """Resuming at global position 4 on 2 ranks gives the items of positions 4, 5, ... that one rank
    would have taken from 4 on (same index, same seed), interleaved by rank."""
    one = TrainSampler(10, num_replicas=1, rank=0, seed=3)
    one.set_epoch(1, start=4)
    ranks = []
    for rank in range(2):
        sampler = TrainSampler(10, num_replicas=2, rank=rank, seed=3)
        sampler.set_epoch(1, start=4)
        ranks.append(list(sampler))
    assert [item for pair in zip(*ranks) for item in pair] == list(one) and len(ranks[0]) == len(ranks[1]) == 3
    odd = TrainSampler(10, num_replicas=2, rank=1, seed=3)
    odd.set_epoch(1, start=5)  # a start that is not a multiple of the ranks (another world size before)
    assert list(odd) == list(one)[2::2] and odd.items_per_epoch == 10
    with pytest.raises(ValueError, match="start 11 outside"):
        odd.set_epoch(1, start=11)


def test_an_item_is_the_same_whichever_process_loads_it(videos, small_cfg, write_lists):
    rows = [(videos[n], i) for i, n in enumerate(["lossless", "h264", "audio", "tiny"])]
    frames = []
    for workers in (0, 2):
        loader = construct_loader(small_cfg(write_lists(rows), "DATA_LOADER.NUM_WORKERS", workers,
                                            "DATA_LOADER.PERSISTENT_WORKERS", False), "train")
        set_loader_epoch(loader, 1)
        frames.append(torch.cat([b.frames for b in loader]))
    assert torch.equal(frames[0], frames[1])


def test_same_seed_same_batches_with_two_workers(videos, small_cfg, write_lists):
    rows = [(videos[n], i) for i, n in enumerate(["lossless", "h264", "audio", "tiny"])]

    def first_batch(seed):
        torch.manual_seed(123)  # the global generator must not matter
        cfg = small_cfg(write_lists(rows), "RNG_SEED", seed, "DATA_LOADER.NUM_WORKERS", 2,
                        "DATA_LOADER.PERSISTENT_WORKERS", False)
        batch = next(iter(construct_loader(cfg, "train")))
        return batch.video_index.tolist(), batch.frames

    (a_idx, a), (b_idx, b), (c_idx, c) = first_batch(1), first_batch(1), first_batch(2)
    assert a.dtype == torch.uint8 and a.shape == (4, 3, 8, 56, 56)
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
        assert all(str(path) in reason for _, path, reason in counter.failures())


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
    assert counter.failures() == [(1, str(videos["empty"]), f"decoder decord: video file {videos['empty']} is empty "
                                   "(0 bytes)")]


def test_bad_files_are_opened_once_per_run_without_workers(videos, small_cfg, write_lists, monkeypatch):
    counter = CountingOpener(monkeypatch)
    rows = [(videos["h264"], 0), (videos["audio"], 1), (videos["missing"], 2), (videos["garbage"], 3)]
    cfg = small_cfg(write_lists(rows), "DATA_LOADER.NUM_RETRIES", 6, "TRAIN.BATCH_SIZE", 2)
    loader = construct_loader(cfg, "train")
    for epoch in range(3):
        set_loader_epoch(loader, epoch)
        assert len(list(loader)) == 2
    assert counter.opens[str(videos["missing"])] == 1 and counter.opens[str(videos["garbage"])] == 1
    assert counter.opens[str(videos["h264"])] >= 3


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_loader_logs_each_bad_video_once_in_the_main_process(videos, small_cfg, write_lists):
    rows = [(videos[n], i) for i, n in enumerate(["lossless", "h264", "audio"])]
    rows += [(videos[n], 3 + i) for i, n in enumerate(BAD_NAMES)]
    cfg = small_cfg(write_lists(rows), "DATA_LOADER.NUM_WORKERS", 2, "DATA.SAMPLING_RATE", 8,
                    "DATA_LOADER.NUM_RETRIES", 6, "DATA.DECODING_BACKEND", "pyav")
    loader = construct_loader(cfg, "train")
    records = _ListHandler()
    # a handler on the module's logger: setup_logging() stops propagation to pytest's caplog
    logger = logging.getLogger("stvit_video.datasets.loader")
    logger.addHandler(records)
    try:
        for epoch in range(2):  # both workers meet bad files, in both epochs
            set_loader_epoch(loader, epoch)
            list(loader)
    finally:
        logger.removeHandler(records)
    messages = [r.getMessage() for r in records.records]
    assert len(messages) == 5 and all(r.levelno == logging.WARNING for r in records.records)
    for name in BAD_NAMES:
        assert sum(str(videos[name]) in m for m in messages) == 1
    assert all("kinetics train: video" in m and "(substituted): decoder pyav:" in m for m in messages)


def test_native_decoder_noise_is_silenced_in_workers(videos, small_cfg, write_lists, capfd, monkeypatch):
    """4 bad files, 2 epochs, decord: 2 workers print no native line, the loader one line per bad video.

    Before: 120 native lines (each bad file reopened NUM_RETRIES times in each worker and epoch,
    two FFmpeg / decord lines per try) beside 8 project lines. capfd captures file descriptor 2,
    which the forked worker processes inherit, so their native output is counted too. Without
    workers the caller's decord settings are kept: its native lines still show (once per file).
    """
    rows = [(videos["lossless"], 0), (videos["h264"], 1)] + [(videos[n], 2 + i) for i, n in enumerate(
        ["empty", "garbage", "truncated", "corrupt_mid"])]
    records = _ListHandler()
    logger = logging.getLogger("stvit_video.datasets.loader")
    logger.addHandler(records)
    # only our handler: one left by another test (e.g. on a closed stream) must not write to fd 2
    monkeypatch.setattr(logger, "propagate", False)

    def run(workers: int) -> list[str]:
        cfg = small_cfg(write_lists(rows), "DATA_LOADER.NUM_WORKERS", workers, "DATA.DECODING_BACKEND", "decord",
                        "DATA.SAMPLING_RATE", 8, "TRAIN.BATCH_SIZE", 2, "DATA_LOADER.NUM_RETRIES", 10)
        loader = construct_loader(cfg, "train")
        capfd.readouterr()
        for epoch in range(2):
            set_loader_epoch(loader, epoch)
            assert len(list(loader)) == 3
        del loader  # stop the persistent workers before reading what they wrote
        return capfd.readouterr().err.splitlines()

    try:
        native = run(2)
        assert native == [], native[:4]
        assert len(records.records) == 4 and all("could not be decoded" in r.getMessage() for r in records.records)
        assert any("ERROR opening" in line for line in run(0))  # decord's own line, not silenced in-process
    finally:
        logger.removeHandler(records)


def test_batches_keep_the_decoders_memory_order_and_normalise_contiguous(videos, small_cfg, write_lists):
    """Frames stay in (T, H, W, C) memory from the decoder to the batch (no de-interleave on the
    host); the device transform writes the contiguous float batch the model takes."""
    from stvit_video.datasets.device_transforms import DeviceTransform

    rows = [(videos["lossless"], 0), (videos["h264"], 1)]
    for workers in (0, 1):
        cfg = small_cfg(write_lists(rows), "DATA_LOADER.NUM_WORKERS", workers, "DATA_LOADER.PERSISTENT_WORKERS", False)
        batch = next(iter(construct_loader(cfg, "test")))
        assert batch.frames.shape == (3, 3, 8, 56, 56)
        assert batch.frames.is_contiguous(memory_format=torch.channels_last_3d)
        transform = DeviceTransform((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
        out = transform(batch.frames, False)
        reference = (batch.frames.contiguous().float() / 255 - 0.45) / 0.225
        assert out.is_contiguous() and torch.allclose(out, reference, atol=1e-5)


class _MallocMode(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> str:
        from stvit_video.utils.cpu_malloc import cpu_malloc_mode

        return cpu_malloc_mode()


def test_workers_keep_freed_memory_for_their_next_items_when_asked(videos, small_cfg, write_lists):
    """DATA_LOADER.MALLOC_REUSE: each worker serves its items' buffers from a heap it never trims
    (on any device: the workers are CPU processes), instead of a fresh mmap per clip."""
    lists = write_lists([(videos["lossless"], 0)])
    inits = {reuse: construct_loader(small_cfg(lists, "DATA_LOADER.MALLOC_REUSE", reuse), "train").worker_init_fn
             for reuse in (True, False)}
    assert inits[False].keywords["malloc_reuse"] is False
    # a spawned worker: a fresh interpreter, where nothing has set malloc yet (mallopt is per process)
    modes = torch.utils.data.DataLoader(_MallocMode(), num_workers=1, worker_init_fn=inits[True],
                                        multiprocessing_context="spawn", batch_size=None)
    assert next(iter(modes)).startswith("reuse")
