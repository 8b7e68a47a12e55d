"""The video clip dataset (row -> clip sampler -> decoder -> transform) and its Kinetics factory.

Item contract (:class:`VideoSample`, batched by :func:`stvit_video.datasets.loader.collate_samples`):

- ``frames``: (C, T, H, W) float32, normalised; (S, C, T, H, W) in training when
  ``AUG.NUM_SAMPLE = S > 1`` (S augmentations of one decoded clip).
- ``label``: class id of the video the frames come from.
- ``video_index``: row of that video in the list (a substitute's row in train/val).
- ``view_index``: ``clip * num_crops + crop`` in test (``len = videos x clips x crops``,
  item ``i`` is view ``i % views`` of video ``i // views``); 0 in train and val.
- ``failed``: test only: the view could not be decoded; ``frames`` are zeros and the tester
  must exclude (and report) the video. Always False in train/val.
- ``bad_videos``: rows of the videos that could not be decoded while producing this item.

Bad videos: in train/val a video is tried ``num_retries`` times (a new random clip each time
in training), then another random video is substituted, at most ``num_retries`` times in a
row before a :class:`DataError` stops the run. Known-bad rows are remembered by the worker
process and substituted at once on later visits (still reported in ``bad_videos``), and a
dataset whose every video failed raises instead of looping. The worker logs each bad path
once. Counting happens in the parent from ``bad_videos`` (see
:class:`stvit_video.datasets.bad_videos.BadVideoCounter`), because attributes changed in
DataLoader workers are invisible to the trainer. In test nothing is substituted.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from fvcore.common.config import CfgNode

from stvit_video.datasets.clip_sampling import ClipIndices, ClipSpec, centre_clip, random_clip, uniform_clip
from stvit_video.datasets.decoder import open_video
from stvit_video.datasets.transforms import EvalTransform, TrainTransform
from stvit_video.datasets.video_list import SPLITS, VideoRecord, load_split
from stvit_video.utils.errors import DataError

__all__ = ["DATASETS", "RetryPolicy", "VideoClipDataset", "VideoSample", "build_dataset", "build_kinetics"]

logger = logging.getLogger(__name__)

# (video_frames, fps, clip_index) -> clip
ClipSampler = Callable[[int, float, int], ClipIndices]
# (uint8 (T, H, W, C) frames, spatial_index) -> (C, T, H, W) float32
ClipTransform = Callable[[torch.Tensor, int], torch.Tensor]


class VideoSample(NamedTuple):
    """One item of :class:`VideoClipDataset`; see the module docstring for each field."""

    frames: torch.Tensor
    label: int
    video_index: int
    view_index: int
    failed: bool
    bad_videos: tuple[int, ...]


@dataclass
class RetryPolicy:
    """What to do when a video cannot be decoded.

    Attributes:
        num_retries: decode attempts per video (``DATA_LOADER.NUM_RETRIES``).
        substitute: replace a bad video with a random other one (train/val) or mark the
            view failed (test).
        known_bad: rows found bad by this process; never retried again.
    """

    num_retries: int
    substitute: bool
    known_bad: set[int] = field(default_factory=set)

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
    """Clips of a list of videos, ``views_per_video`` items per video.

    Args:
        videos: the rows (path, label).
        name: for messages, e.g. "kinetics train".
        backend: ``DATA.DECODING_BACKEND``.
        sample_clip: (video_frames, fps, clip_index) -> :class:`ClipIndices`.
        transform: (uint8 (T, H, W, C), spatial_index) -> (C, T, H, W) float32.
        num_clips, num_crops: views per video = num_clips x num_crops (1 x 1 in train/val).
        num_samples: augmented copies of each decoded clip (``AUG.NUM_SAMPLE``).
        retry: the bad-video policy.
        placeholder_shape: (C, T, H, W) of the zeros returned for a failed test view.
        class_names: class names by label, when the list has them (class folders).
        source: the list file or folder, for messages.
    """

    def __init__(self, videos: Sequence[VideoRecord], *, name: str, backend: str,
                 sample_clip: ClipSampler, transform: ClipTransform, num_clips: int = 1,
                 num_crops: int = 1, num_samples: int = 1, retry: RetryPolicy,
                 placeholder_shape: tuple[int, int, int, int], class_names: Sequence[str] | None = None,
                 source: str = "") -> None:
        if not videos:
            raise DataError(f"{name}: no videos")
        self.videos = list(videos)
        self.name, self.backend = name, backend
        self.sample_clip, self.transform = sample_clip, transform
        self.num_clips, self.num_crops, self.num_samples = num_clips, num_crops, num_samples
        self.retry = retry
        self.placeholder_shape = placeholder_shape
        self.class_names = list(class_names) if class_names is not None else None
        self.source = source
        self._last_errors: dict[int, str] = {}

    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.videos) * self.views_per_video

    def __getitem__(self, index: int) -> VideoSample:
        video_index, view_index = divmod(index, self.views_per_video)
        bad: list[int] = []
        for candidate in self.retry.candidates(video_index, len(self.videos)):
            if candidate in self.retry.known_bad:
                bad.append(candidate)
                continue
            try:
                frames = self._load(candidate, view_index)
            except DataError as e:
                self._mark_bad(candidate, e)
                bad.append(candidate)
                continue
            return VideoSample(frames, self.videos[candidate].label, candidate, view_index, False, tuple(bad))
        if not self.retry.substitute:
            placeholder = torch.zeros(self.placeholder_shape, dtype=torch.float32)
            return VideoSample(placeholder, self.videos[video_index].label, video_index, view_index,
                               True, tuple(bad))
        raise self._gave_up(bad)

    def _load(self, video_index: int, view_index: int) -> torch.Tensor:
        """Decode and transform one view, trying ``num_retries`` times; raise the last DataError."""
        clip_index, crop_index = divmod(view_index, self.num_crops)
        spatial_index = crop_index if self.num_crops == 3 else 1  # one crop = the centre crop
        error: DataError | None = None
        for _ in range(self.retry.num_retries):
            try:
                with open_video(self.videos[video_index].path, self.backend) as video:
                    clip = self.sample_clip(video.num_frames, video.fps, clip_index)
                    frames = torch.from_numpy(video.get_frames(clip.indices))
            except DataError as e:
                error = e
                continue
            if self.num_samples == 1:
                return self.transform(frames, spatial_index)
            return torch.stack([self.transform(frames, spatial_index) for _ in range(self.num_samples)])
        assert error is not None, "num_retries must be >= 1"
        raise error

    def _mark_bad(self, video_index: int, error: DataError) -> None:
        self.retry.known_bad.add(video_index)
        self._last_errors[video_index] = str(error)
        action = "substituting another video" if self.retry.substitute else "marking the view failed"
        logger.warning("%s: video %d failed %d attempt(s), %s: %s", self.name, video_index,
                       self.retry.num_retries, action, error)

    def _gave_up(self, bad: list[int]) -> DataError:
        example = bad[0] if bad else -1
        detail = self._last_errors.get(example, "remembered as bad by this worker")
        if len(self.retry.known_bad) >= len(self.videos):
            what = f"every one of the {len(self.videos)} videos failed to decode"
        else:
            what = f"{len(bad)} videos in a row failed to decode"
        return DataError(f"{self.name}: {what} (e.g. {self.videos[example].path}: {detail}); check "
                         f"DATA.PATH_TO_DATA_DIR, DATA.PATH_PREFIX and DATA.DECODING_BACKEND = {self.backend}")

    def __repr__(self) -> str:
        return (f"VideoClipDataset({self.name}: {len(self.videos)} videos x {self.num_clips} clips x "
                f"{self.num_crops} crops, backend={self.backend}, transform={self.transform!r})")


def build_kinetics(cfg: CfgNode, split: str) -> VideoClipDataset:
    """Kinetics-style dataset of ``split`` ("train", "val" or "test") from the config.

    Reads ``DATA.*`` (list, decoding, clip, crops), ``TEST.NUM_ENSEMBLE_VIEWS`` /
    ``TEST.NUM_SPATIAL_CROPS``, ``AUG.*`` (train only), ``DATA_LOADER.NUM_RETRIES``.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    data = cfg.DATA
    videos = load_split(data.PATH_TO_DATA_DIR, split, num_classes=cfg.MODEL.NUM_CLASSES,
                        separator=data.PATH_LABEL_SEPARATOR, path_prefix=data.PATH_PREFIX)
    spec = ClipSpec(data.NUM_FRAMES, data.SAMPLING_RATE, data.TARGET_FPS)
    num_clips = num_crops = num_samples = 1
    # module-level functions and partials, not lambdas: spawned workers must pickle them
    if split == "train":
        sampler: ClipSampler = functools.partial(_train_clip, spec)
        transform: ClipTransform = TrainTransform(
            crop_size=data.TRAIN_CROP_SIZE, jitter_scales=data.TRAIN_JITTER_SCALES,
            relative_scales=data.TRAIN_JITTER_SCALES_RELATIVE,
            relative_aspect=data.TRAIN_JITTER_ASPECT_RELATIVE, mean=data.MEAN, std=data.STD,
            rand_augment=cfg.AUG.AA_TYPE if cfg.AUG.ENABLE else "",
            erase_prob=cfg.AUG.RE_PROB if cfg.AUG.ENABLE else 0.0, erase_mode=cfg.AUG.RE_MODE)
        num_samples, crop = cfg.AUG.NUM_SAMPLE, data.TRAIN_CROP_SIZE
    elif split == "val":
        sampler = functools.partial(_val_clip, spec)
        transform = EvalTransform(short_side=data.TRAIN_JITTER_SCALES[0], crop_size=data.TRAIN_CROP_SIZE,
                                  mean=data.MEAN, std=data.STD)
        crop = data.TRAIN_CROP_SIZE
    else:
        num_clips, num_crops = cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS
        sampler = functools.partial(_test_clip, spec, num_clips)
        transform = EvalTransform(short_side=data.TEST_CROP_SIZE, crop_size=data.TEST_CROP_SIZE,
                                  mean=data.MEAN, std=data.STD)
        crop = data.TEST_CROP_SIZE
    return VideoClipDataset(
        videos.records, name=f"kinetics {split}", backend=data.DECODING_BACKEND, sample_clip=sampler,
        transform=transform, num_clips=num_clips, num_crops=num_crops, num_samples=num_samples,
        retry=RetryPolicy(cfg.DATA_LOADER.NUM_RETRIES, substitute=split != "test"),
        placeholder_shape=(data.INPUT_CHANNEL_NUM, data.NUM_FRAMES, crop, crop),
        class_names=videos.class_names, source=videos.source)


def _train_clip(spec: ClipSpec, video_frames: int, fps: float, clip_index: int) -> ClipIndices:
    return random_clip(spec, video_frames, fps)


def _val_clip(spec: ClipSpec, video_frames: int, fps: float, clip_index: int) -> ClipIndices:
    return centre_clip(spec, video_frames, fps)


def _test_clip(spec: ClipSpec, num_clips: int, video_frames: int, fps: float, clip_index: int) -> ClipIndices:
    return uniform_clip(spec, video_frames, fps, clip_index, num_clips)


# TRAIN.DATASET / TEST.DATASET -> factory (cfg, split) -> dataset
DATASETS: dict[str, Callable[[CfgNode, str], VideoClipDataset]] = {"kinetics": build_kinetics}


def build_dataset(cfg: CfgNode, split: str) -> VideoClipDataset:
    """The dataset of ``split``, from ``TRAIN.DATASET`` (train/val) or ``TEST.DATASET`` (test)."""
    key = "TEST.DATASET" if split == "test" else "TRAIN.DATASET"
    name = cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET
    if name not in DATASETS:
        raise DataError(f"{key} = {name!r}: unknown dataset; use one of {', '.join(DATASETS)}")
    return DATASETS[name](cfg, split)
