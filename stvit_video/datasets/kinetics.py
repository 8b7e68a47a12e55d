"""The video clip dataset (row -> clip sampler -> decoder -> transform) and its Kinetics factory.

Items: one item is one decode of one video. In train and val item ``i`` is video ``i``;
in test the dataset has ``videos x num_clips`` items and item ``i`` is clip ``i % num_clips``
of video ``i // num_clips`` (``TEST.NUM_ENSEMBLE_VIEWS`` clips per video). Each item holds
``V`` views transformed from that single decode: in train ``V = k x AUG.NUM_SAMPLE``, ``k =
DATA.NUM_REPEATED_SAMPLES`` clips with their own starts inside one decoded window
(:func:`~stvit_video.datasets.clip_sampling.repeated_clips`; ``k = 1``: one random clip), each
augmented ``AUG.NUM_SAMPLE`` times; 1 in val; ``num_crops = TEST.NUM_SPATIAL_CROPS`` crops in test.

Item contract (:class:`VideoSample`, batched by :func:`stvit_video.datasets.loader.collate_samples`):

- ``frames``: uint8 (V, C, T, H, W), not normalised (see
  :mod:`stvit_video.datasets.device_transforms`).
- ``label``: class id of the video the frames come from.
- ``video_index``: row of that video in the list (a substitute's row in train/val).
- ``view_index``: V ints, the view of each entry of ``frames``: ``clip * num_crops + crop`` in
  test (a video has ``num_clips * num_crops`` views); 0 for every entry in train and val.
- ``failed``: test only: the clip could not be decoded; ``frames`` are V zero views and the
  tester must exclude (and report) the video. Always False in train/val.
- ``bad_videos``: rows of the videos that could not be decoded while producing this item.
- ``bad_reasons``: the decoder's message for each of ``bad_videos`` (same order); the reason a
  failed item failed is the entry of its own ``video_index``.

Bad videos: a file that can never be decoded (missing, empty, not a video, cannot be opened:
:class:`~stvit_video.datasets.decoder.VideoOpenError`) fails at its first open. An error that
can pass (in the middle of the stream) is retried ``num_retries`` times in train, where each
attempt draws a new random clip; in val and test the clip is fixed, so a retry would decode
the same frames and is not made. A row that failed is remembered (with its reason) by the
process for the rest of the run and never opened again: with ``DATA_LOADER.PERSISTENT_WORKERS``
each worker opens a bad file at most once per run. In train/val another random video is
substituted, at most ``num_retries`` times in a row before a :class:`DataError` stops the run,
and a dataset whose every video failed raises instead of looping. In test nothing is
substituted: the item is marked failed. The dataset does not log: items carry the bad rows and
reasons; the loader logs one warning per bad video in the main process, and the trainer or
tester counts them from ``bad_videos`` (see
:class:`stvit_video.datasets.bad_videos.BadVideoCounter`), because attributes changed in
DataLoader workers are invisible to the trainer.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from stvit_video.datasets.clip_sampling import (ClipIndices, ClipSpec, centre_clip, frame_window, random_clip,
                                                repeated_clips, segment_clip)
from stvit_video.datasets.decoder import VideoOpenError, open_video
from stvit_video.datasets.record_store import as_store
from stvit_video.datasets.transforms import EvalTransform, TrainTransform
from stvit_video.datasets.video_list import SPLITS, VideoList, VideoRecord, load_split
from stvit_video.utils.errors import DataError
from stvit_video.utils.view_grid import view_index, views_per_video
from stvit_video.utils.seed import seeded_rng

__all__ = ["DATASETS", "RepeatedSampler", "RetryPolicy", "VideoClipDataset", "VideoSample", "build_dataset",
           "build_kinetics", "clip_dataset", "list_split", "test_short_side"]

# (video_frames, fps, clip_index) -> clip
ClipSampler = Callable[[int, float, int], ClipIndices]
# (uint8 (T, H, W, C) frames, V) -> uint8 (V, C, T, H, W): V views of one decoded clip; the training
# transform also takes a list of K clips (repeated sampling) -> (K x V, C, T, H, W)
ClipTransform = Callable[[torch.Tensor, int], torch.Tensor]


class VideoSample(NamedTuple):
    """One item of :class:`VideoClipDataset`; see the module docstring for each field."""

    frames: torch.Tensor
    label: int
    video_index: int
    view_index: tuple[int, ...]
    failed: bool
    bad_videos: tuple[int, ...]
    bad_reasons: tuple[str, ...]


@dataclass(frozen=True)
class RepeatedSampler:
    """Training clips of repeated sampling: (video_frames, fps) -> ``count`` clips inside one
    window of ``window`` clip spans (:func:`~stvit_video.datasets.clip_sampling.repeated_clips`)."""

    spec: ClipSpec
    count: int
    window: float = 1.0

    def __call__(self, video_frames: int, fps: float) -> list[ClipIndices]:
        return repeated_clips(self.spec, video_frames, fps, self.count, self.window)


@dataclass
class RetryPolicy:
    """What to do when a video cannot be decoded.

    Attributes:
        num_retries: ``DATA_LOADER.NUM_RETRIES``: attempts at a video whose error can pass
            (when ``retry_transient``), and substitutes tried in a row.
        substitute: replace a bad video with a random other one (train/val) or mark the
            item failed (test).
        retry_transient: retry an error that can pass (mid-stream): True when every attempt
            draws a new random clip (train); a fixed clip (val/test) would fail the same way.
        known_bad: rows found bad by this process -> the decoder's message; never opened again.
    """

    num_retries: int
    substitute: bool
    retry_transient: bool = True
    known_bad: dict[int, str] = field(default_factory=dict)

    def candidates(self, index: int, num_videos: int) -> Iterator[int]:
        """``index``, then (when substituting) up to ``num_retries`` random rows not known bad."""
        yield index
        if not self.substitute:
            return
        for _ in range(self.num_retries):
            if len(self.known_bad) >= num_videos:
                return
            candidate = int(torch.randint(num_videos, ()))
            while candidate in self.known_bad:  # terminates: some row is not known bad
                candidate = (candidate + 1) % num_videos
            yield candidate


class VideoClipDataset(torch.utils.data.Dataset):
    """Clips of a list of videos: ``num_clips`` items per video, ``views_per_item`` views each.

    Args:
        videos: the rows (path, label).
        name: for messages, e.g. "kinetics train".
        backend: ``DATA.DECODING_BACKEND``.
        sample_clip: (video_frames, fps, clip_index) -> :class:`ClipIndices`.
        transform: (uint8 (T, H, W, C), V) -> uint8 (V, C, T, H, W).
        num_clips: items (clips) per video (``TEST.NUM_ENSEMBLE_VIEWS`` in test, else 1).
        num_crops: crops per clip (``TEST.NUM_SPATIAL_CROPS`` in test, else 1).
        num_samples: augmented copies of each decoded clip (``AUG.NUM_SAMPLE``, train);
            ``num_crops`` and ``num_samples`` cannot both exceed 1.
        repeated: train only: a :class:`RepeatedSampler` that replaces ``sample_clip`` with
            ``repeated.count`` clips of one decoded window per item (``DATA.NUM_REPEATED_SAMPLES``).
        retry: the bad-video policy.
        placeholder_shape: (C, T, H, W) of the zero views of a failed test item.
        class_names: class names by label, when the list has them.
        source: the list file or folder, for messages.
        time_windows: ``(start, end)`` seconds per row, or None (the whole video): the clips of
            a row are sampled inside its window, as if the window were the video (prediction on
            long videos; see :func:`~stvit_video.datasets.clip_sampling.sliding_windows`).
    """

    def __init__(self, videos: Sequence[VideoRecord], *, name: str, backend: str,
                 sample_clip: ClipSampler, transform: ClipTransform, num_clips: int = 1,
                 num_crops: int = 1, num_samples: int = 1, repeated: RepeatedSampler | None = None,
                 retry: RetryPolicy,
                 placeholder_shape: tuple[int, int, int, int], class_names: Sequence[str] | None = None,
                 source: str = "", time_windows: Sequence[tuple[float, float]] | None = None) -> None:
        if not videos:
            raise DataError(f"{name}: no videos")
        if time_windows is not None and len(time_windows) != len(videos):
            raise ValueError(f"{name}: {len(time_windows)} time windows for {len(videos)} videos")
        if num_crops > 1 and num_samples > 1:
            raise ValueError(f"{name}: num_crops = {num_crops} and num_samples = {num_samples}: "
                             "views of an item are either crops (test) or augmentations (train)")
        if repeated is not None and (num_crops > 1 or num_clips > 1):
            raise ValueError(f"{name}: repeated sampling is for training; it cannot combine with "
                             f"{num_clips} clips x {num_crops} crops per video")
        # numpy-backed rows: forked workers read them without copying the list (record_store.py)
        self.videos = as_store(videos)
        self.name, self.backend = name, backend
        self.sample_clip, self.transform = sample_clip, transform
        self.num_clips, self.num_crops, self.num_samples = num_clips, num_crops, num_samples
        self.repeated = repeated
        self.retry = retry
        self.placeholder_shape = placeholder_shape
        self.class_names = list(class_names) if class_names is not None else None
        self.source = source
        self.time_windows = list(time_windows) if time_windows is not None else None

    @property
    def views_per_video(self) -> int:
        """Distinct views of a video: ``num_clips x num_crops`` (the tester's expected count)."""
        return views_per_video(self.num_clips, self.num_crops)

    @property
    def clips_per_item(self) -> int:
        """Clips sampled from one decode: ``DATA.NUM_REPEATED_SAMPLES`` in train, else 1."""
        return self.repeated.count if self.repeated is not None else 1

    @property
    def views_per_item(self) -> int:
        """Batch entries one item becomes: ``clips_per_item x num_crops x num_samples``."""
        return self.clips_per_item * self.num_crops * self.num_samples

    def __len__(self) -> int:
        return len(self.videos) * self.num_clips

    def __getitem__(self, key: int | tuple[int, int]) -> VideoSample:
        """Item ``key``, or ``(index, seed)`` from :class:`~stvit_video.datasets.loader.TrainSampler`:
        then every random draw of the item (clip, augmentation, substitutes) comes from ``seed``,
        whichever process loads it."""
        if isinstance(key, tuple):
            index, seed = key
            with seeded_rng(seed):
                return self._item(index)
        return self._item(key)

    def _item(self, index: int) -> VideoSample:
        video_index, clip_index = divmod(index, self.num_clips)
        # augmented copies share their view; crops are views clip * num_crops + crop
        views = tuple(view_index(clip_index, k % self.num_crops, self.num_crops) for k in range(self.views_per_item))
        bad: list[int] = []
        for candidate in self.retry.candidates(video_index, len(self.videos)):
            if candidate in self.retry.known_bad:
                bad.append(candidate)
                continue
            try:
                frames = self._load(candidate, clip_index)
            except DataError as e:
                self.retry.known_bad[candidate] = str(e)
                bad.append(candidate)
                continue
            return VideoSample(frames, self.videos[candidate].label, candidate, views, False, tuple(bad),
                               self._reasons(bad))
        if not self.retry.substitute:
            placeholder = torch.zeros((self.views_per_item, *self.placeholder_shape), dtype=torch.uint8)
            return VideoSample(placeholder, self.videos[video_index].label, video_index, views, True,
                               tuple(bad), self._reasons(bad))
        raise self._gave_up(bad)

    def _load(self, video_index: int, clip_index: int) -> torch.Tensor:
        """Decode one clip and transform it into uint8 (V, C, T, H, W); raise the last DataError.

        :class:`VideoOpenError` is raised at once; other errors are retried when the policy
        says a new attempt can pass.
        """
        attempts = self.retry.num_retries if self.retry.retry_transient else 1
        error: DataError | None = None
        for _ in range(attempts):
            try:
                with open_video(self.videos[video_index].path, self.backend) as video:
                    first, count = self._frames_of(video_index, video.num_frames, video.fps)
                    if self.repeated is None:
                        clips = [self.sample_clip(count, video.fps, clip_index).indices]
                    else:
                        clips = [clip.indices for clip in self.repeated(count, video.fps)]
                    # one decode for all clips: each distinct frame once
                    unique, inverse = np.unique(np.concatenate(clips), return_inverse=True)
                    frames = torch.from_numpy(video.get_frames(unique + first))
            except VideoOpenError:
                raise  # permanent: another attempt would fail the same way
            except DataError as e:
                error = e
                continue
            if self.repeated is None:
                return self.transform(_take(frames, inverse), self.views_per_item)
            # the clips go to the transform together: one output tensor, no concatenation copy
            return self.transform([_take(frames, p) for p in inverse.reshape(len(clips), -1)], self.num_samples)
        assert error is not None, "num_retries must be >= 1"
        raise error

    def _frames_of(self, video_index: int, video_frames: int, fps: float) -> tuple[int, int]:
        """First frame and frame count a row's clips come from: its time window, or all frames."""
        if self.time_windows is None:
            return 0, video_frames
        start, end = self.time_windows[video_index]
        try:
            return frame_window(start, end, video_frames, fps)
        except ValueError as e:
            raise DataError(f"{self.videos[video_index].path}: {e}") from e

    def _reasons(self, rows: list[int]) -> tuple[str, ...]:
        return tuple(self.retry.known_bad[row] for row in rows)

    def _gave_up(self, bad: list[int]) -> DataError:
        example = bad[0] if bad else -1
        detail = self.retry.known_bad.get(example, "remembered as bad by this worker")
        if len(self.retry.known_bad) >= len(self.videos):
            what = f"every one of the {len(self.videos)} videos failed to decode"
        else:
            what = f"{len(bad)} videos in a row failed to decode"
        return DataError(f"{self.name}: {what} (e.g. {self.videos[example].path}: {detail}); check "
                         f"DATA.PATH_TO_DATA_DIR, DATA.PATH_PREFIX and DATA.DECODING_BACKEND = {self.backend}")

    def __repr__(self) -> str:
        return (f"VideoClipDataset({self.name}: {len(self.videos)} videos x {self.num_clips} clips x "
                f"{self.num_crops} crops, backend={self.backend}, transform={self.transform!r})")


def _take(frames: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    """``frames[positions]``: a strided view when the positions step evenly (a clip of the decoded
    frames usually does), else a gathered copy."""
    steps = np.diff(positions)
    if positions.size == 1 or (steps[0] > 0 and (steps == steps[0]).all()):
        step = int(steps[0]) if positions.size > 1 else 1
        return frames[int(positions[0]) : int(positions[-1]) + 1 : step]
    return frames[torch.from_numpy(positions)]


def test_short_side(cfg: CfgNode) -> int:
    """The short side test frames are scaled to: ``DATA.TEST_SHORT_SIDE``, where 0 means ``DATA.TEST_CROP_SIZE``."""
    return int(cfg.DATA.TEST_SHORT_SIDE or cfg.DATA.TEST_CROP_SIZE)


def list_split(cfg: CfgNode, split: str) -> str:
    """The list a role reads: ``TEST.SPLIT`` for the test job ("val" in the Kinetics configs,
    whose official test set is unlabelled), else the role's own list."""
    return cfg.TEST.SPLIT if split == "test" else split


def build_kinetics(cfg: CfgNode, split: str, *, views: tuple[int, int] | None = None) -> VideoClipDataset:
    """Kinetics-style dataset of ``split`` ("train", "val" or "test": the clip sampling,
    transform and views of that role) from the config; the test role reads the list of
    ``TEST.SPLIT`` (:func:`list_split`).

    Reads ``DATA.*`` (list, decoding, clip, crops), ``TEST.NUM_ENSEMBLE_VIEWS`` /
    ``TEST.NUM_SPATIAL_CROPS``, ``AUG.NUM_SAMPLE`` / ``AUG.AA_TYPE`` / ``DATA.NUM_REPEATED_SAMPLES``
    / ``DATA.REPEATED_SAMPLE_WINDOW`` (train only),
    ``DATA_LOADER.NUM_RETRIES``. ``DATA.MEAN`` / ``DATA.STD`` and random erasing belong to
    :func:`~stvit_video.datasets.device_transforms.build_device_transform`.

    Args:
        views: test only: ``(clips, crops)`` instead of the config's (``(1, 1)``: the centre
            clip x centre crop).
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    data = cfg.DATA
    videos = load_split(data.PATH_TO_DATA_DIR, list_split(cfg, split), num_classes=cfg.MODEL.NUM_CLASSES,
                        separator=data.PATH_LABEL_SEPARATOR, path_prefix=data.PATH_PREFIX)
    return clip_dataset(cfg, split, videos, views=views)


def clip_dataset(cfg: CfgNode, split: str, videos: VideoList, *,
                 views: tuple[int, int] | None = None,
                 time_windows: Sequence[tuple[float, float]] | None = None) -> VideoClipDataset:
    """The dataset of ``split``'s clips, transforms and views (as :func:`build_kinetics`) over
    the given ``videos``: e.g. files named on a command line, for prediction; ``time_windows``
    as in :class:`VideoClipDataset`."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    if views is not None and split != "test":
        raise ValueError(f"{split}: only the test role takes other views, got {views}")
    data = cfg.DATA
    listed = list_split(cfg, split)
    spec = ClipSpec(data.NUM_FRAMES, data.SAMPLING_RATE, data.TARGET_FPS, data.OUT_OF_BOUND)
    num_clips = num_crops = num_samples = 1
    repeated = None
    # module-level functions and partials, not lambdas: spawned workers must pickle them
    if split == "train":
        sampler: ClipSampler = functools.partial(_train_clip, spec)
        transform: ClipTransform = TrainTransform(
            crop_size=data.TRAIN_CROP_SIZE, jitter_scales=data.TRAIN_JITTER_SCALES,
            relative_scales=data.TRAIN_JITTER_SCALES_RELATIVE,
            relative_aspect=data.TRAIN_JITTER_ASPECT_RELATIVE,
            rand_augment=cfg.AUG.AA_TYPE if cfg.AUG.ENABLE else "", flip=data.RANDOM_FLIP,
            antialias=data.TRAIN_RESIZE_ANTIALIAS)
        num_samples, crop = cfg.AUG.NUM_SAMPLE, data.TRAIN_CROP_SIZE
        if data.NUM_REPEATED_SAMPLES > 1:
            repeated = RepeatedSampler(spec, data.NUM_REPEATED_SAMPLES, data.REPEATED_SAMPLE_WINDOW)
    elif split == "val":
        sampler = functools.partial(_val_clip, spec)
        transform = EvalTransform(short_side=data.TRAIN_JITTER_SCALES[0], crop_size=data.TRAIN_CROP_SIZE)
        crop = data.TRAIN_CROP_SIZE
    else:
        num_clips, num_crops = views or (cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS)
        sampler = functools.partial(_test_clip, spec, num_clips)
        transform = EvalTransform(short_side=test_short_side(cfg), crop_size=data.TEST_CROP_SIZE)
        crop = data.TEST_CROP_SIZE
    return VideoClipDataset(
        videos.records, name=f"kinetics {split}" if split == listed else f"kinetics {split} ({listed} list)",
        backend=data.DECODING_BACKEND, sample_clip=sampler,
        transform=transform, num_clips=num_clips, num_crops=num_crops, num_samples=num_samples, repeated=repeated,
        retry=RetryPolicy(cfg.DATA_LOADER.NUM_RETRIES, substitute=split != "test",
                          retry_transient=split == "train"),
        placeholder_shape=(data.INPUT_CHANNEL_NUM, data.NUM_FRAMES, crop, crop),
        class_names=videos.class_names, source=videos.source, time_windows=time_windows)


def _train_clip(spec: ClipSpec, video_frames: int, fps: float, clip_index: int) -> ClipIndices:
    return random_clip(spec, video_frames, fps)


def _val_clip(spec: ClipSpec, video_frames: int, fps: float, clip_index: int) -> ClipIndices:
    return centre_clip(spec, video_frames, fps)


def _test_clip(spec: ClipSpec, num_clips: int, video_frames: int, fps: float, clip_index: int) -> ClipIndices:
    return segment_clip(spec, video_frames, fps, clip_index, num_clips)


# TRAIN.DATASET / TEST.DATASET -> factory (cfg, split, *, views) -> dataset
DATASETS: dict[str, Callable[..., VideoClipDataset]] = {"kinetics": build_kinetics}


def build_dataset(cfg: CfgNode, split: str, *, views: tuple[int, int] | None = None) -> VideoClipDataset:
    """The dataset of ``split``, from ``TRAIN.DATASET`` (train/val) or ``TEST.DATASET`` (test);
    ``views`` as in :func:`build_kinetics`."""
    key = "TEST.DATASET" if split == "test" else "TRAIN.DATASET"
    name = cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET
    if name not in DATASETS:
        raise DataError(f"{key} = {name!r}: unknown dataset; use one of {', '.join(DATASETS)}")
    return DATASETS[name](cfg, split, views=views)
