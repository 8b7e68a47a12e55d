import logging
import shutil

import numpy as np
import pytest
import torch

from stvit_video.datasets import BadVideoCounter, build_dataset, collate_samples
from stvit_video.datasets.clip_sampling import ClipSpec, centre_clip, uniform_clip
from stvit_video.datasets.synthetic import frame_pattern, read_frame_index
from stvit_video.datasets.transforms import normalize_to_cthw, to_tchw
from stvit_video.utils.errors import DataError

GOOD_NAMES = ["lossless", "h264", "audio", "short", "tiny", "fps25", "fps2997"]
BAD_NAMES = ["missing", "empty", "garbage", "truncated", "corrupt_mid"]
SPEC = ClipSpec(8, 2, 30)


def to_float_cthw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) -> (C, T, H, W) float32 in [0, 1]."""
    return normalize_to_cthw(to_tchw(frames), (0.0,) * 3, (1.0,) * 3)


def raw_frames(frames: torch.Tensor, spatial_index: int = 1) -> torch.Tensor:
    """A transform that keeps whole frames, so tests can read which frames were decoded."""
    return to_float_cthw(frames)


def decoded_indices(clip: torch.Tensor) -> list[int]:
    """Frame indices drawn in a (C, T, H, W) [0, 1] clip of whole frames."""
    frames = (clip.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()
    return [read_frame_index(f) for f in frames]


@pytest.mark.parametrize("split, length, shape", [
    ("train", 7, (3, 8, 56, 56)), ("val", 7, (3, 8, 56, 56)), ("test", 7 * 9, (3, 8, 56, 56)),
])
def test_split_lengths_shapes_and_labels(videos, small_cfg, write_lists, split, length, shape):
    rows = [(videos[name], label) for label, name in enumerate(GOOD_NAMES)]
    dataset = build_dataset(small_cfg(write_lists(rows)), split)
    assert len(dataset) == length
    for i in range(len(dataset)):
        frames, label, video_index, view_index = dataset[i][:4]  # the documented contract
        assert frames.shape == shape and frames.dtype == torch.float32
        assert label == video_index == i // dataset.views_per_video
        assert view_index == i % dataset.views_per_video
        assert not dataset[i].failed and dataset[i].bad_videos == ()
    # normalised: a grey 0.5 would map to about (0.5 - 0.45) / 0.225; values span both signs
    assert frames.min() < -1 and frames.max() > 1


@pytest.mark.parametrize("name, frames", [("lossless", 60), ("fps25", 50), ("fps2997", 50), ("short", 12)])
def test_test_views_cover_first_and_last_frame_exactly(videos, small_cfg, write_lists, name, frames):
    dataset = build_dataset(small_cfg(write_lists([(videos[name], 0)])), "test")
    dataset.transform = raw_frames
    fps = {"fps25": 25.0, "fps2997": 30000 / 1001}.get(name, 30.0)
    for view in range(dataset.views_per_video):
        clip_index = view // 3
        expected = uniform_clip(SPEC, frames, fps, clip_index, 3).indices.tolist()
        assert decoded_indices(dataset[view].frames) == expected
    assert decoded_indices(dataset[0].frames)[0] == 0
    assert decoded_indices(dataset[8].frames)[-1] == frames - 1


def test_multi_view_items_are_exact_clips_and_crops(videos, small_cfg, write_lists):
    # the short side (48) is the crop size: no scaling, so crops are exact slices of the frames
    cfg = small_cfg(write_lists([(videos["h264"], 1), (videos["lossless"], 4)]), "DATA.TEST_CROP_SIZE", 48,
                    "DATA.MEAN", [0.0, 0.0, 0.0], "DATA.STD", [1.0, 1.0, 1.0])
    dataset = build_dataset(cfg, "test")
    assert len(dataset) == 2 * 3 * 3
    for view in range(9):
        sample = dataset[9 + view]  # second video
        assert (sample.label, sample.video_index, sample.view_index) == (4, 1, view)
        clip_index, crop = divmod(view, 3)
        indices = uniform_clip(SPEC, 60, 30.0, clip_index, 3).indices
        full = np.stack([frame_pattern(i, 48, 64) for i in indices])
        expected = to_float_cthw(torch.from_numpy(full))[..., 8 * crop : 8 * crop + 48]
        assert torch.equal(sample.frames, expected)


def test_one_test_crop_is_the_centre(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["lossless"], 0)]), "TEST.NUM_SPATIAL_CROPS", 1, "TEST.NUM_ENSEMBLE_VIEWS",
                    2, "DATA.TEST_CROP_SIZE", 48, "DATA.MEAN", [0.0] * 3, "DATA.STD", [1.0] * 3)
    dataset = build_dataset(cfg, "test")
    assert len(dataset) == 2
    frame0 = to_float_cthw(torch.from_numpy(frame_pattern(0, 48, 64)[None]))[..., 8:56]
    assert torch.equal(dataset[0].frames[:, :1], frame0)


def test_val_is_the_centre_clip(videos, small_cfg, write_lists):
    dataset = build_dataset(small_cfg(write_lists([(videos["lossless"], 0)])), "val")
    dataset.transform = raw_frames
    assert decoded_indices(dataset[0].frames) == centre_clip(SPEC, 60, 30.0).indices.tolist()


def test_train_clips_are_random_and_inside_the_video(videos, small_cfg, write_lists):
    torch.manual_seed(0)
    dataset = build_dataset(small_cfg(write_lists([(videos["lossless"], 0)])), "train")
    dataset.transform = raw_frames
    starts = set()
    for _ in range(40):
        indices = decoded_indices(dataset[0].frames)
        assert np.all(np.diff(indices) == 2) and 0 <= indices[0] and indices[-1] <= 59
        starts.add(indices[0])
    assert len(starts) > 10


def test_csv_path_with_spaces_and_prefix(videos, small_cfg, tmp_path):
    (tmp_path / "train.csv").write_text("air drumming/clip 01.mp4 3\n")
    cfg = small_cfg(tmp_path, "DATA.PATH_PREFIX", str(videos["spaced"].parent.parent))
    sample = build_dataset(cfg, "train")[0]
    assert sample.label == 3 and sample.frames.shape == (3, 8, 56, 56) and sample.bad_videos == ()


def test_class_folder_dataset(videos, small_cfg, tmp_path):
    for cls, name in [("zumba", "h264"), ("air drumming", "audio"), ("air drumming", "tiny")]:
        (tmp_path / "train" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(videos[name], tmp_path / "train" / cls / f"{name}.mp4")
    dataset = build_dataset(small_cfg(tmp_path), "train")
    assert dataset.class_names == ["air drumming", "zumba"]
    assert [dataset[i].label for i in range(3)] == [0, 0, 1]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_train_survives_and_reports_every_bad_video(videos, small_cfg, write_lists, backend):
    rows = [(videos["lossless"], 0), (videos["h264"], 1)] + [(videos[n], 2 + i) for i, n in enumerate(BAD_NAMES)]
    # 8 x 8 clips span the whole 60-frame corrupt_mid video, so its damage is always decoded;
    # 6 substitutes in a row: known-bad rows are skipped, so the 6th is good at the latest
    cfg = small_cfg(write_lists(rows), "DATA.DECODING_BACKEND", backend, "DATA.SAMPLING_RATE", 8,
                    "DATA_LOADER.NUM_RETRIES", 6)
    dataset = build_dataset(cfg, "train")
    torch.manual_seed(0)
    records = _ListHandler()
    # a handler on the module's logger: setup_logging() stops propagation to pytest's caplog
    logger = logging.getLogger("stvit_video.datasets.kinetics")
    logger.addHandler(records)
    try:
        samples = [dataset[i] for i in range(len(dataset))]
    finally:
        logger.removeHandler(records)
    for row, sample in enumerate(samples):
        assert not sample.failed and sample.frames.shape == (3, 8, 56, 56)
        assert sample.video_index in (0, 1) and sample.label == sample.video_index
        if row >= 2:
            assert sample.bad_videos[0] == row  # the requested bad row, then any bad substitutes
    counter = BadVideoCounter(dataset)
    counter.update(collate_samples(samples))
    assert counter.count == 5 and counter.failed_views == 0
    assert counter.paths() == [str(videos[n]) for n in BAD_NAMES]
    assert "5 of 7 videos could not be decoded" in counter.summary()
    for name in BAD_NAMES:  # each bad path logged once, however often it was hit
        assert sum(str(videos[name]) in r.getMessage() for r in records.records) == 1
        assert all(r.levelno == logging.WARNING for r in records.records)


def test_all_videos_bad_is_a_clear_error_not_a_loop(videos, small_cfg, write_lists):
    rows = [(videos[n], 0) for n in BAD_NAMES]
    dataset = build_dataset(small_cfg(write_lists(rows)), "train")
    for i in range(len(dataset)):
        with pytest.raises(DataError, match="failed to decode") as info:
            dataset[i]
        assert "DATA.PATH_TO_DATA_DIR" in str(info.value)
    with pytest.raises(DataError, match="every one of the 5 videos failed to decode"):
        dataset[0]


def test_test_split_marks_failed_views_and_never_substitutes(videos, small_cfg, write_lists):
    rows = [(videos["h264"], 0), (videos["missing"], 1), (videos["garbage"], 2)]
    dataset = build_dataset(small_cfg(write_lists(rows)), "test")
    samples = [dataset[i] for i in range(len(dataset))]
    for i, sample in enumerate(samples):
        row = i // 9
        assert (sample.video_index, sample.view_index, sample.label) == (row, i % 9, row)
        assert sample.failed == (row > 0)
        assert sample.bad_videos == ((row,) if row > 0 else ())
        assert sample.frames.shape == (3, 8, 56, 56)
        if sample.failed:
            assert not sample.frames.any()
    counter = BadVideoCounter(dataset)
    counter.update(collate_samples(samples))
    assert counter.failed_views == 18 and counter.paths() == [str(videos["missing"]), str(videos["garbage"])]
    assert "18 test views marked failed" in counter.summary()


def test_repeated_augmentation_gives_several_clips_per_video(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["h264"], 5), (videos["audio"], 6)]), "AUG.NUM_SAMPLE", 2)
    dataset = build_dataset(cfg, "train")
    samples = [dataset[0], dataset[1]]
    assert samples[0].frames.shape == (2, 3, 8, 56, 56)
    assert not torch.equal(samples[0].frames[0], samples[0].frames[1])  # two different augmentations
    batch = collate_samples(samples)
    assert batch.frames.shape == (4, 3, 8, 56, 56)
    assert batch.labels.tolist() == [5, 5, 6, 6] and batch.video_index.tolist() == [0, 0, 1, 1]


def test_unknown_dataset_name(small_cfg, tmp_path):
    with pytest.raises(DataError, match="TRAIN.DATASET = 'ucf'"):
        build_dataset(small_cfg(tmp_path, "TRAIN.DATASET", "ucf"), "train")


def test_datasets_pickle_for_spawned_workers(videos, small_cfg, write_lists):
    import pickle

    cfg = small_cfg(write_lists([(videos["h264"], 0)]), "AUG.ENABLE", True)
    for split in ("train", "val", "test"):
        clone = pickle.loads(pickle.dumps(build_dataset(cfg, split)))
        assert clone[0].frames.shape == (3, 8, 56, 56)
