"""Repeated sampling (``DATA.NUM_REPEATED_SAMPLES``): k clips from one decoded window, counted in clips."""
import numpy as np
import pytest
import torch

from stvit_video.bench.videos import read_frame_index
from stvit_video.config import validate_config
from stvit_video.datasets import build_dataset, construct_loader, set_loader_epoch
from stvit_video.datasets.clip_sampling import ClipSpec, repeated_clips
from stvit_video.datasets.loader import TrainSampler, epoch_plan
from stvit_video.engine.resume import resume_samples
from stvit_video.utils.errors import CheckpointError, ConfigError

from tests.helpers.counting_opener import CountingOpener

SPEC = ClipSpec(num_frames=8, sampling_rate=2, target_fps=0)  # span 16 frames


@pytest.mark.parametrize("window, spread", [(1.0, 0), (1.5, 8)])
def test_repeated_clips_start_independently_inside_one_window(window, spread):
    """Starts a whole number of sampling steps apart, inside the window: 1.0 -> the same frames;
    1.5 (24 frames for a 16-frame span, stride 2) -> up to 4 steps apart."""
    generator = torch.Generator().manual_seed(0)
    seen_spread, firsts = set(), set()
    for _ in range(300):
        clips = repeated_clips(SPEC, 100, 30.0, 3, window, generator)
        starts = [int(c.indices[0]) for c in clips]
        for c in clips:
            assert (np.diff(c.indices) == 2).all() and c.padded == 0
        # every clip lies inside [w, w + window * span): its last frame too
        assert max(int(c.indices[-1]) for c in clips) - min(starts) < window * 16
        assert all((s - min(starts)) % 2 == 0 for s in starts)  # one frame grid: shared frames
        seen_spread.add(max(starts) - min(starts))
        firsts.add(min(starts))
    assert max(seen_spread) == spread
    assert min(firsts) == 0 and max(firsts) >= 100 - window * 16 - spread  # the window travels the video


def test_repeated_clips_in_a_video_shorter_than_the_window_or_the_clip():
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        clips = repeated_clips(SPEC, 20, 30.0, 2, 2.0, generator)  # 20 frames < 32-frame window
        assert all(0 <= int(c.indices[0]) <= 5 and c.indices.max() <= 19 and c.padded == 0 for c in clips)
    short = repeated_clips(SPEC, 10, 30.0, 2, 1.0, generator)  # shorter than one clip: loops from 0
    assert [int(c.indices[0]) for c in short] == [0, 0] and short[0].padded == 3
    with pytest.raises(ValueError, match="window must be >= 1.0"):
        repeated_clips(SPEC, 100, 30.0, 2, 0.5)
    with pytest.raises(ValueError, match="count must be >= 1"):
        repeated_clips(SPEC, 100, 30.0, 0)


def test_an_item_decodes_once_and_returns_k_clips_of_that_window(videos, small_cfg, write_lists, monkeypatch):
    """The lossless video's frames carry their index: the k clips of an item are k different
    stride-2 clips inside one 1.5-span window, each augmented on its own, from one open and one read."""
    cfg = small_cfg(write_lists([(videos["lossless"], 3)]), "DATA.NUM_REPEATED_SAMPLES", 3,
                    "DATA.REPEATED_SAMPLE_WINDOW", 1.5, "DATA.TARGET_FPS", 0)
    dataset = build_dataset(cfg, "train")
    assert dataset.clips_per_item == 3 and dataset.views_per_item == 3
    counter = CountingOpener(monkeypatch)
    seen = []
    transform = dataset.transform

    def spy(clips, views):  # the raw clips the transform gets, together
        seen.extend([read_frame_index(f) for f in clip.numpy()] for clip in clips)
        return transform(clips, views)

    dataset.transform = spy
    sample = dataset[(0, 12345)]
    assert counter.opens == counter.reads == {str(videos["lossless"]): 1}
    assert sample.frames.shape == (3, 3, 8, 56, 56) and sample.label == 3 and sample.view_index == (0, 0, 0)
    assert len(seen) == 3 and all(np.diff(clip).tolist() == [2] * 7 for clip in seen)
    assert max(c[-1] for c in seen) - min(c[0] for c in seen) < 1.5 * 16
    assert not torch.equal(sample.frames[0], sample.frames[1])  # own offsets and augmentations
    seen.clear()
    again = dataset[(0, 12345)]  # an item's draws come from its seed
    assert torch.equal(again.frames, sample.frames)


def test_a_one_span_window_gives_the_frames_a_single_clip_of_the_same_seed_gets(videos, small_cfg, write_lists):
    """Window 1.0: the k clips are the very frames k = 1 draws from the same item seed, so the
    benchmark's side-by-side item timing compares the same decodes (and one decode serves k clips)."""
    lists = write_lists([(videos["lossless"], 0)])
    frames_of = {}
    for k in (1, 2):
        dataset = build_dataset(small_cfg(lists, "DATA.NUM_REPEATED_SAMPLES", k, "DATA.TARGET_FPS", 0), "train")
        seen = []
        transform = dataset.transform

        def spy(clips, views, transform=transform, seen=seen):
            clips = [clips] if isinstance(clips, torch.Tensor) else clips
            seen.extend([read_frame_index(f) for f in clip.numpy()] for clip in clips)
            return transform(clips, views)

        dataset.transform = spy
        for seed in range(5):
            dataset[(0, seed)]
        frames_of[k] = seen
    assert frames_of[2][0::2] == frames_of[2][1::2] == frames_of[1]
    assert len({tuple(clip) for clip in frames_of[1]}) > 1  # the seeds draw different windows


def test_k_counts_in_clips_batches_and_epochs(videos, small_cfg, write_lists):
    rows = [(videos["lossless"], i) for i in range(8)]
    base = ("TRAIN.BATCH_SIZE", 4, "DATA.TARGET_FPS", 0)
    one = construct_loader(small_cfg(write_lists(rows), *base), "train")
    two = construct_loader(small_cfg(write_lists(rows), *base, "DATA.NUM_REPEATED_SAMPLES", 2), "train")
    # the global batch and the epoch stay in clips: 4 clips per batch, 8 clips (2 steps) per epoch
    assert (one.batch_size, len(one), epoch_plan(one).items_per_epoch) == (4, 2, 8)
    assert (two.batch_size, len(two), epoch_plan(two).items_per_epoch) == (2, 2, 4)
    set_loader_epoch(two, 0)
    batch = next(iter(two))
    assert batch.frames.shape[0] == 4 and batch.labels.tolist()[0::2] == batch.labels.tolist()[1::2]


@pytest.mark.parametrize("num_items, ranks, k", [(8, 2, 2), (7, 2, 2), (10, 3, 3), (5, 1, 2)])
def test_k_consecutive_epochs_see_every_video_and_resume_exactly(num_items, ranks, k):
    per_epoch = -(-num_items // (ranks * k)) * ranks
    seen = []
    for epoch in range(k):  # one cycle: the k parts of one permutation
        shards = []
        for rank in range(ranks):
            sampler = TrainSampler(num_items, num_replicas=ranks, rank=rank, seed=4, repeats=k)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            resumed = TrainSampler(num_items, num_replicas=ranks, rank=rank, seed=4, repeats=k)
            resumed.set_epoch(epoch, start=ranks)  # one global step of one item per rank later
            assert list(resumed) == shards[-1][1:]
        assert {len(s) for s in shards} == {per_epoch // ranks} and sampler.items_per_epoch == per_epoch
        seen += [index for shard in shards for index, _ in shard]
    assert sorted(set(seen)) == list(range(num_items))  # every video once per k epochs (plus padding)
    if per_epoch * k == num_items:
        assert len(seen) == len(set(seen))
    next_cycle = TrainSampler(num_items, seed=4, repeats=k)
    next_cycle.set_epoch(k)
    first_cycle = TrainSampler(num_items, seed=4, repeats=k)
    first_cycle.set_epoch(0)
    assert list(next_cycle) != list(first_cycle)


def test_repeats_of_1_keep_the_sampler_of_before():
    old_style = TrainSampler(9, seed=1)
    explicit = TrainSampler(9, seed=1, repeats=1)
    for sampler in (old_style, explicit):
        sampler.set_epoch(2)
    assert list(old_style) == list(explicit) and old_style.items_per_epoch == 9


def test_a_mid_epoch_resume_with_another_k_is_refused(tmp_path, small_cfg):
    cfg = small_cfg()
    now = {"items_per_step": 4, "items_per_epoch": 8, "num_items": 8, "world_size": 1, "accum_steps": 1,
           "batch_size": 4, "seed": 0, "repeated_samples": 1}
    saved = {**now, "samples_in_epoch": 4, "repeated_samples": 2}
    with pytest.raises(CheckpointError, match="DATA.NUM_REPEATED_SAMPLES 2") as error:
        resume_samples(cfg, now, {"position": saved, "epoch": 3}, tmp_path / "checkpoint_epoch_00004_sample_000004.pyth")
    assert "Set DATA.NUM_REPEATED_SAMPLES 2 to finish the epoch" in str(error.value)
    assert resume_samples(cfg, now, {"position": {**saved, "samples_in_epoch": 0}, "epoch": 3}, tmp_path) == 0
    older = {k: v for k, v in saved.items() if k != "repeated_samples"}  # a file from before: k = 1
    assert resume_samples(cfg, now, {"position": older, "epoch": 3}, tmp_path) == 4


@pytest.mark.parametrize("opts, key", [
    (["DATA.NUM_REPEATED_SAMPLES", 0], "DATA.NUM_REPEATED_SAMPLES"),
    (["DATA.REPEATED_SAMPLE_WINDOW", 0.9], "DATA.REPEATED_SAMPLE_WINDOW"),
    (["DATA.NUM_REPEATED_SAMPLES", 3], "DATA.NUM_REPEATED_SAMPLES"),  # 4 clips per GPU
    (["DATA.NUM_REPEATED_SAMPLES", 2, "AUG.NUM_SAMPLE", 4], "DATA.NUM_REPEATED_SAMPLES"),
])
def test_bad_repeated_sampling_settings_name_the_key(small_cfg, opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(small_cfg("", *opts))
