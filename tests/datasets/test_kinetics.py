import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import stvit_video.datasets.kinetics as kinetics
from stvit_video.datasets import BadVideoCounter, build_dataset, collate_samples
from stvit_video.datasets.clip_sampling import ClipSpec, centre_clip, segment_clip
from stvit_video.bench.videos import frame_pattern, read_frame_index
from stvit_video.utils.errors import DataError
from tests.helpers.counting_opener import CountingOpener

GOOD_NAMES = ["lossless", "h264", "audio", "short", "tiny", "fps25", "fps2997"]
BAD_NAMES = ["missing", "empty", "garbage", "truncated", "corrupt_mid"]
SPEC = ClipSpec(8, 2, 30)


def raw_frames(frames: torch.Tensor, num_views: int) -> torch.Tensor:
    """A transform that keeps whole frames, so tests can read which frames were decoded."""
    return frames.permute(3, 0, 1, 2).unsqueeze(0).expand(num_views, -1, -1, -1, -1).contiguous()


def decoded_indices(clip: torch.Tensor) -> list[int]:
    """Frame indices drawn in a uint8 (C, T, H, W) clip of whole frames."""
    return [read_frame_index(f) for f in clip.permute(1, 2, 3, 0).numpy()]


@pytest.mark.parametrize("split, length, shape", [
    ("train", 7, (1, 3, 8, 56, 56)), ("val", 7, (1, 3, 8, 56, 56)), ("test", 7 * 3, (3, 3, 8, 56, 56)),
])
def test_split_lengths_shapes_and_labels(videos, small_cfg, write_lists, split, length, shape):
    rows = [(videos[name], label) for label, name in enumerate(GOOD_NAMES)]
    dataset = build_dataset(small_cfg(write_lists(rows)), split)
    assert len(dataset) == length  # test: videos x clips, each item holding its 3 crops
    for i in range(len(dataset)):
        frames, label, video_index, view_index = dataset[i][:4]  # the documented contract
        assert frames.shape == shape and frames.dtype == torch.uint8
        video, clip = divmod(i, dataset.num_clips)
        assert label == video_index == video
        assert view_index == (tuple(clip * 3 + crop for crop in range(3)) if split == "test" else (0,))
        assert not dataset[i].failed and dataset[i].bad_videos == dataset[i].bad_reasons == ()
    assert dataset.views_per_video == (9 if split == "test" else 1)
    # raw pixels, not normalised: the synthetic frames hold black and white cells
    assert frames.min() == 0 and frames.max() == 255


@pytest.mark.parametrize("name, frames", [("lossless", 60), ("fps25", 50), ("fps2997", 50), ("short", 12)])
def test_test_clips_are_the_segment_centred_clips(videos, small_cfg, write_lists, name, frames):
    dataset = build_dataset(small_cfg(write_lists([(videos[name], 0)])), "test")
    dataset.transform = raw_frames
    fps = {"fps25": 25.0, "fps2997": 30000 / 1001}.get(name, 30.0)
    for clip_index in range(3):  # item i = clip i of the only video
        expected = segment_clip(SPEC, frames, fps, clip_index, 3).indices.tolist()
        for crop in dataset[clip_index].frames:
            assert decoded_indices(crop) == expected


def test_the_test_role_reads_the_list_of_test_split(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["lossless"], 0)]), "TEST.SPLIT", "val")
    Path(cfg.DATA.PATH_TO_DATA_DIR, "test.csv").unlink()  # the official protocol tests on the val list
    dataset = build_dataset(cfg, "test")
    assert dataset.source.endswith("val.csv") and dataset.name == "kinetics test (val list)"
    assert dataset.views_per_video == 9 and len(build_dataset(cfg, "test", views=(1, 1))) == 1


def test_multi_view_items_are_exact_clips_and_crops(videos, small_cfg, write_lists):
    # the short side (48) is the crop size: no scaling, so crops are exact slices of the frames
    cfg = small_cfg(write_lists([(videos["h264"], 1), (videos["lossless"], 4)]), "DATA.TEST_CROP_SIZE", 48)
    dataset = build_dataset(cfg, "test")
    assert len(dataset) == 2 * 3
    for clip_index in range(3):
        sample = dataset[3 + clip_index]  # second video
        assert (sample.label, sample.video_index) == (4, 1)
        assert sample.view_index == tuple(clip_index * 3 + crop for crop in range(3))
        indices = segment_clip(SPEC, 60, 30.0, clip_index, 3).indices
        full = torch.from_numpy(np.stack([frame_pattern(i, 48, 64) for i in indices])).permute(3, 0, 1, 2)
        for crop in range(3):
            assert torch.equal(sample.frames[crop], full[..., 8 * crop : 8 * crop + 48])


def test_each_test_clip_is_decoded_once_for_all_its_crops(videos, small_cfg, write_lists, monkeypatch):
    counter = CountingOpener(monkeypatch)
    dataset = build_dataset(small_cfg(write_lists([(videos["h264"], 0), (videos["audio"], 1)])), "test")
    samples = [dataset[i] for i in range(len(dataset))]
    assert sum(s.frames.shape[0] for s in samples) == 2 * 9  # every view
    assert counter.opens == counter.reads == {str(videos["h264"]): 3, str(videos["audio"]): 3}  # one per clip


def test_one_test_crop_is_the_centre(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["lossless"], 0)]), "TEST.NUM_SPATIAL_CROPS", 1, "TEST.NUM_ENSEMBLE_VIEWS",
                    2, "DATA.TEST_CROP_SIZE", 48)
    dataset = build_dataset(cfg, "test")
    assert len(dataset) == 2 and dataset[1].view_index == (1,)
    # clip 0 of 2 starts at int(a / 2) with a = (60 - 16 + 1) / 2: frame 11
    frame0 = torch.from_numpy(frame_pattern(11, 48, 64)).permute(2, 0, 1)[..., 8:56]
    assert dataset[0].frames.shape == (1, 3, 8, 48, 48)
    assert torch.equal(dataset[0].frames[0, :, 0], frame0)


def test_val_is_the_centre_clip(videos, small_cfg, write_lists):
    dataset = build_dataset(small_cfg(write_lists([(videos["lossless"], 0)])), "val")
    dataset.transform = raw_frames
    assert decoded_indices(dataset[0].frames[0]) == centre_clip(SPEC, 60, 30.0).indices.tolist()


def test_train_clips_are_random_and_inside_the_video(videos, small_cfg, write_lists):
    torch.manual_seed(0)
    dataset = build_dataset(small_cfg(write_lists([(videos["lossless"], 0)])), "train")
    dataset.transform = raw_frames
    starts = set()
    for _ in range(40):
        indices = decoded_indices(dataset[0].frames[0])
        assert np.all(np.diff(indices) == 2) and 0 <= indices[0] and indices[-1] <= 59
        starts.add(indices[0])
    assert len(starts) > 10


def test_csv_path_with_spaces_and_prefix(videos, small_cfg, tmp_path):
    (tmp_path / "train.csv").write_text("air drumming/clip 01.mp4 3\n")
    cfg = small_cfg(tmp_path, "DATA.PATH_PREFIX", str(videos["spaced"].parent.parent))
    sample = build_dataset(cfg, "train")[0]
    assert sample.label == 3 and sample.frames.shape == (1, 3, 8, 56, 56) and sample.bad_videos == ()


def test_prepared_folder_with_relative_paths_and_class_names_can_move(videos, small_cfg, tmp_path, monkeypatch):
    prepared = tmp_path / "prepared"
    (prepared / "videos" / "air drumming").mkdir(parents=True)
    shutil.copy(videos["h264"], prepared / "videos" / "air drumming" / "a.mp4")
    (prepared / "train.csv").write_text("videos/air drumming/a.mp4 1\n")
    (prepared / "classnames.txt").write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    moved = prepared.rename(tmp_path / "moved")
    monkeypatch.chdir(videos["h264"].parent)  # any working directory
    dataset = build_dataset(small_cfg(moved), "train")
    assert dataset.class_names == [f"class {i}" for i in range(10)]
    sample = dataset[0]
    assert sample.bad_videos == () and sample.label == 1 and sample.frames.shape == (1, 3, 8, 56, 56)


def test_class_names_must_match_the_head(videos, small_cfg, write_lists):
    folder = write_lists([(videos["h264"], 0)])
    (folder / "classnames.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"classnames.txt lists 3 classes but MODEL.NUM_CLASSES = 10"):
        build_dataset(small_cfg(folder), "train")


def test_class_folder_dataset(videos, small_cfg, tmp_path):
    for cls, name in [("zumba", "h264"), ("air drumming", "audio"), ("air drumming", "tiny")]:
        (tmp_path / "train" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(videos[name], tmp_path / "train" / cls / f"{name}.mp4")
    dataset = build_dataset(small_cfg(tmp_path), "train")
    assert dataset.class_names == ["air drumming", "zumba"]
    assert [dataset[i].label for i in range(3)] == [0, 0, 1]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_train_survives_and_reports_every_bad_video(videos, small_cfg, write_lists, backend):
    rows = [(videos["lossless"], 0), (videos["h264"], 1)] + [(videos[n], 2 + i) for i, n in enumerate(BAD_NAMES)]
    # 8 x 8 clips span the whole 60-frame corrupt_mid video, so its damage is always decoded;
    # 6 substitutes in a row: known-bad rows are skipped, so the 6th is good at the latest
    cfg = small_cfg(write_lists(rows), "DATA.DECODING_BACKEND", backend, "DATA.SAMPLING_RATE", 8,
                    "DATA_LOADER.NUM_RETRIES", 6)
    dataset = build_dataset(cfg, "train")
    torch.manual_seed(0)
    samples = [dataset[i] for i in range(len(dataset))]
    for row, sample in enumerate(samples):
        assert not sample.failed and sample.frames.shape == (1, 3, 8, 56, 56)
        assert sample.video_index in (0, 1) and sample.label == sample.video_index
        assert len(sample.bad_reasons) == len(sample.bad_videos)
        for bad, reason in zip(sample.bad_videos, sample.bad_reasons):  # the decoder's message
            assert reason.startswith(f"decoder {backend}: ") and str(rows[bad][0]) in reason
        if row >= 2:
            assert sample.bad_videos[0] == row  # the requested bad row, then any bad substitutes
    counter = BadVideoCounter(dataset)
    counter.update(collate_samples(samples))
    assert counter.count == 5 and counter.failed_views == 0
    assert counter.paths() == [str(videos[n]) for n in BAD_NAMES]
    assert "5 of 7 videos could not be decoded" in counter.summary()
    failures = counter.failures()
    assert [row for row, _, _ in failures] == [2, 3, 4, 5, 6]
    assert "does not exist" in failures[0][2] and "is empty" in failures[1][2]
    assert "cannot open" in failures[2][2] and "cannot decode frames" in failures[4][2]


def test_permanent_failures_are_opened_once_transient_ones_retried_in_train_only(
        videos, small_cfg, write_lists, monkeypatch):
    counter = CountingOpener(monkeypatch)
    rows = [(videos["h264"], 0), (videos["garbage"], 1), (videos["corrupt_mid"], 2)]
    cfg = small_cfg(write_lists(rows), "DATA.SAMPLING_RATE", 8, "DATA_LOADER.NUM_RETRIES", 4)
    train = build_dataset(cfg, "train")
    for _ in range(3):  # the same rows requested again and again (epochs), in one process
        for i in (1, 2):
            assert train[i].bad_videos[0] == i and train[i].video_index == 0
    garbage, corrupt = str(videos["garbage"]), str(videos["corrupt_mid"])
    assert counter.opens[garbage] == 1  # cannot open: never retried, never reopened
    assert counter.opens[corrupt] == 4  # mid-stream: NUM_RETRIES random clips, then remembered
    assert set(train.retry.known_bad) == {1, 2}
    val = build_dataset(cfg, "val")
    val[2]
    val[2]
    assert counter.opens[corrupt] == 5  # val: the centre clip is fixed, a retry would fail the same way


def test_all_videos_bad_is_a_clear_error_not_a_loop(videos, small_cfg, write_lists):
    rows = [(videos[n], 0) for n in BAD_NAMES]
    dataset = build_dataset(small_cfg(write_lists(rows)), "train")
    for i in range(len(dataset)):
        with pytest.raises(DataError, match="failed to decode") as info:
            dataset[i]
        assert "DATA.PATH_TO_DATA_DIR" in str(info.value)
    with pytest.raises(DataError, match="every one of the 5 videos failed to decode"):
        dataset[0]


def test_test_split_marks_failed_clips_with_their_reason_and_never_substitutes(videos, small_cfg, write_lists):
    rows = [(videos["h264"], 0), (videos["missing"], 1), (videos["garbage"], 2)]
    dataset = build_dataset(small_cfg(write_lists(rows)), "test")
    samples = [dataset[i] for i in range(len(dataset))]
    assert len(samples) == 3 * 3
    for i, sample in enumerate(samples):
        row, clip = divmod(i, 3)
        assert (sample.video_index, sample.label) == (row, row)
        assert sample.view_index == (3 * clip, 3 * clip + 1, 3 * clip + 2)
        assert sample.failed == (row > 0)
        assert sample.bad_videos == ((row,) if row > 0 else ())
        assert sample.frames.shape == (3, 3, 8, 56, 56) and sample.frames.dtype == torch.uint8
        if sample.failed:  # every clip of the video carries the reason, also once it is known bad
            assert not sample.frames.any()
            assert sample.bad_reasons == (dataset.retry.known_bad[row],)
            assert str(rows[row][0]) in sample.bad_reasons[0]
    assert "does not exist" in samples[3].bad_reasons[0] and "cannot open" in samples[6].bad_reasons[0]
    batch = collate_samples(samples[3:5])
    assert batch.failed.tolist() == [True] * 6
    assert batch.failure_reasons() == {1: samples[3].bad_reasons[0]}
    counter = BadVideoCounter(dataset)
    counter.update(collate_samples(samples))
    assert counter.failed_views == 18 and counter.paths() == [str(videos["missing"]), str(videos["garbage"])]
    assert "18 test views marked failed" in counter.summary()


def test_repeated_augmentation_gives_several_clips_per_video(videos, small_cfg, write_lists):
    cfg = small_cfg(write_lists([(videos["h264"], 5), (videos["audio"], 6)]), "AUG.NUM_SAMPLE", 2)
    dataset = build_dataset(cfg, "train")
    samples = [dataset[0], dataset[1]]
    assert samples[0].frames.shape == (2, 3, 8, 56, 56) and samples[0].view_index == (0, 0)
    assert not torch.equal(samples[0].frames[0], samples[0].frames[1])  # two different augmentations
    batch = collate_samples(samples)
    assert batch.frames.shape == (4, 3, 8, 56, 56) and batch.frames.dtype == torch.uint8
    assert batch.labels.tolist() == [5, 5, 6, 6] and batch.video_index.tolist() == [0, 0, 1, 1]
    assert batch.view_index.tolist() == [0, 0, 0, 0]


def test_crops_and_augmentations_do_not_mix(small_cfg):
    with pytest.raises(ValueError, match="either crops .test. or augmentations .train."):
        kinetics.VideoClipDataset([kinetics.VideoRecord("a.mp4", 0)], name="x", backend="pyav",
                                  sample_clip=kinetics._val_clip, transform=raw_frames, num_crops=3,
                                  num_samples=2, retry=kinetics.RetryPolicy(1, False),
                                  placeholder_shape=(3, 8, 56, 56))


def test_unknown_dataset_name(small_cfg, tmp_path):
    with pytest.raises(DataError, match="TRAIN.DATASET = 'ucf'"):
        build_dataset(small_cfg(tmp_path, "TRAIN.DATASET", "ucf"), "train")


def test_datasets_pickle_for_spawned_workers(videos, small_cfg, write_lists):
    import pickle

    cfg = small_cfg(write_lists([(videos["h264"], 0)]), "AUG.ENABLE", True)
    for split, views in (("train", 1), ("val", 1), ("test", 3)):
        clone = pickle.loads(pickle.dumps(build_dataset(cfg, split)))
        assert clone[0].frames.shape == (views, 3, 8, 56, 56)


def test_time_windows_sample_their_clips_inside_the_window(videos, small_cfg, write_lists):
    """A row with a time window is a video of its own: its test clips are the segment-centred
    clips of the window's frames, offset to where the window starts."""
    from stvit_video.datasets.kinetics import clip_dataset
    from stvit_video.datasets.video_list import VideoList, VideoRecord

    cfg = small_cfg(write_lists([(videos["lossless"], 0)]))
    records = [VideoRecord(str(videos["lossless"]), 0)] * 3  # 60 frames at 30 fps: 2 s
    windows = [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0)]
    dataset = clip_dataset(cfg, "test", VideoList(records, None, "windows"), time_windows=windows)
    dataset.transform = raw_frames
    for row, (start, end) in enumerate(windows):
        first = int(start * 30)
        for clip_index in range(3):
            expected = (segment_clip(SPEC, 30, 30.0, clip_index, 3).indices + first).tolist()
            assert decoded_indices(dataset[row * 3 + clip_index].frames[0]) == expected
            assert max(expected) < first + 30  # never outside its own window
    late = clip_dataset(cfg, "test", VideoList(records[:1], None, "late"), time_windows=[(2.5, 3.0)])
    sample = late[0]
    assert sample.failed and "window 2.5-3 s starts after the video's 60 frames (2.00 s)" in sample.bad_reasons[0]
