"""Which frames of a video make a clip: pure functions from (frame count, fps) to indices.

A clip is ``num_frames`` frames taken every ``sampling_rate`` frames *at target_fps*
(SlowFast's frame-rate normalisation). In a video recorded at ``fps``, consecutive clip frames
are ``stride = sampling_rate * fps / target_fps`` video frames apart (a float: 25 fps video,
rate 2 at 30 fps -> 1.667), and clip frame ``i`` is the video frame nearest to
``start + i * stride``. The clip covers video frames ``[start, start + (num_frames - 1) *
stride]`` (closed), so its start ranges over ``[0, max_start]`` with ``max_start = n - 1 -
(num_frames - 1) * stride``.

Videos shorter than the clip (``max_start < 0``) are not rejected: the clip starts at frame 0
and every index past the last frame repeats the last frame; ``ClipIndices.padded`` counts them.

Test clips are spaced uniformly over the whole video: clip ``k`` of ``K`` starts at
``k * max_start / (K - 1)``, so clip 0 starts at the first frame and clip ``K - 1`` ends at the
last one (SlowFast's ``k * max_start / K`` never reaches the end).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["ClipIndices", "ClipSpec", "centre_clip", "clip_at", "random_clip", "uniform_clip"]


class ClipSpec(NamedTuple):
    """Temporal shape of a clip (``DATA.NUM_FRAMES``, ``DATA.SAMPLING_RATE``, ``DATA.TARGET_FPS``)."""

    num_frames: int
    sampling_rate: int
    target_fps: float

    def stride(self, fps: float) -> float:
        """Video frames between two clip frames in a video recorded at ``fps``."""
        if fps <= 0:
            raise ValueError(f"frame rate must be > 0, got {fps}")
        return self.sampling_rate * fps / self.target_fps

    def max_start(self, video_frames: int, fps: float) -> float:
        """Latest start (in video frames) that keeps the clip inside the video; < 0 if too short."""
        return video_frames - 1 - (self.num_frames - 1) * self.stride(fps)


class ClipIndices(NamedTuple):
    """A sampled clip.

    Attributes:
        indices: int64 array (num_frames,) of video frame indices in ``[0, video_frames)``,
            non-decreasing.
        clip_index: which of the test clips this is (0 in train and val).
        padded: how many trailing indices repeat the last frame because the video is too short.
    """

    indices: np.ndarray
    clip_index: int
    padded: int


def clip_at(spec: ClipSpec, video_frames: int, fps: float, start: float, clip_index: int = 0) -> ClipIndices:
    """The clip of ``spec`` starting at video frame ``start`` (a float; see the module doc)."""
    if video_frames < 1:
        raise ValueError(f"a video needs >= 1 frame, got {video_frames}")
    positions = start + np.arange(spec.num_frames, dtype=np.float64) * spec.stride(fps)
    # floor(x + 0.5): nearest frame, halves rounded up (np.round would round halves to even)
    nearest = np.floor(positions + 0.5).astype(np.int64)
    padded = int((nearest > video_frames - 1).sum())
    return ClipIndices(np.clip(nearest, 0, video_frames - 1), clip_index, padded)


def random_clip(spec: ClipSpec, video_frames: int, fps: float,
                generator: torch.Generator | None = None) -> ClipIndices:
    """Training: a clip starting uniformly at random in ``[0, max_start]``.

    Uses torch's generator (the global one by default), which the DataLoader seeds per worker.
    """
    max_start = max(spec.max_start(video_frames, fps), 0.0)
    start = float(torch.rand((), generator=generator)) * max_start
    return clip_at(spec, video_frames, fps, start)


def centre_clip(spec: ClipSpec, video_frames: int, fps: float) -> ClipIndices:
    """Validation: the clip in the middle of the video."""
    return clip_at(spec, video_frames, fps, max(spec.max_start(video_frames, fps), 0.0) / 2)


def uniform_clip(spec: ClipSpec, video_frames: int, fps: float, clip_index: int, num_clips: int) -> ClipIndices:
    """Test: clip ``clip_index`` of ``num_clips`` spaced uniformly from the first to the last frame.

    With ``num_clips == 1`` this is the centre clip.
    """
    if not 0 <= clip_index < num_clips:
        raise IndexError(f"clip_index {clip_index} outside [0, {num_clips})")
    if num_clips == 1:
        return centre_clip(spec, video_frames, fps)
    max_start = max(spec.max_start(video_frames, fps), 0.0)
    return clip_at(spec, video_frames, fps, clip_index * max_start / (num_clips - 1), clip_index)
