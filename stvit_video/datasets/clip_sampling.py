"""Which frames of a video make a clip: pure functions from (frame count, fps) to indices.

The positions follow mmaction's ``SampleFrames``, which the official Video Swin recipe uses.

Stride: a clip is ``num_frames`` frames ``stride`` video frames apart. With ``target_fps == 0``
(the official recipe) ``stride = sampling_rate`` raw frames whatever the video's frame rate;
with ``target_fps > 0`` (SlowFast's frame-rate normalisation) the sampling rate counts frames at
``target_fps``, so ``stride = sampling_rate * fps / target_fps`` (a float: a 25 fps video, rate 2
at 30 fps -> 1.667) and clip frame ``i`` is the video frame nearest to ``start + i * stride``.

Span: a clip covers ``span = num_frames * stride`` frames (mmaction's ``clip_len *
frame_interval``; the last ``stride - 1`` of them are not read). In a video of ``n`` frames:

- train: the start is an integer drawn uniformly from ``[0, n - span]`` (0 when the video is
  shorter than the span);
- test, clip ``k`` of ``K`` (segment-centred, mmaction's ``test_mode=True``): with
  ``a = (n - span + 1) / K`` the clip starts at ``int(k * a + a / 2)``, i.e. in the middle of
  the k-th of K equal segments of the possible starts (0 when ``n < span``). For ``K = 1`` this
  is the centre clip, which validation uses. For 300 frames, 32 x 2 (span 64), ``a = 237 / K``:
  K = 1 -> start 118; K = 2 -> 59, 177; K = 4 -> 29, 88, 148, 207.

Videos shorter than the clip are not rejected: indices past the last frame loop back to the
start (``out_of_bound="loop"``, index modulo ``n``, as mmaction) or repeat the last frame
(``"repeat_last"``); :attr:`ClipIndices.padded` counts them.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["OUT_OF_BOUND_POLICIES", "ClipIndices", "ClipSpec", "centre_clip", "clip_at", "clip_starts", "frame_window",
           "random_clip", "repeated_clips", "segment_clip", "sliding_windows"]

# DATA.OUT_OF_BOUND choices
OUT_OF_BOUND_POLICIES = ("loop", "repeat_last")


class ClipSpec(NamedTuple):
    """Temporal shape of a clip (``DATA.NUM_FRAMES``, ``DATA.SAMPLING_RATE``, ``DATA.TARGET_FPS``,
    ``DATA.OUT_OF_BOUND``); ``target_fps`` 0 means raw frames."""

    num_frames: int
    sampling_rate: int
    target_fps: float
    out_of_bound: str = "loop"

    def stride(self, fps: float) -> float:
        """Video frames between two clip frames in a video recorded at ``fps``."""
        if self.target_fps == 0:
            return float(self.sampling_rate)
        if fps <= 0:
            raise ValueError(f"frame rate must be > 0, got {fps}")
        return self.sampling_rate * fps / self.target_fps

    def span(self, fps: float) -> float:
        """Video frames a clip covers, ``num_frames * stride`` (mmaction's ``clip_len * frame_interval``)."""
        return self.num_frames * self.stride(fps)


class ClipIndices(NamedTuple):
    """A sampled clip.

    Attributes:
        indices: int64 array (num_frames,) of video frame indices in ``[0, video_frames)``.
        clip_index: which of the test clips this is (0 in train and val).
        padded: how many indices fell past the last frame (looped or repeated) because the
            video is shorter than the clip.
    """

    indices: np.ndarray
    clip_index: int
    padded: int


def clip_at(spec: ClipSpec, video_frames: int, fps: float, start: float, clip_index: int = 0) -> ClipIndices:
    """The clip of ``spec`` starting at video frame ``start`` (see the module doc)."""
    if video_frames < 1:
        raise ValueError(f"a video needs >= 1 frame, got {video_frames}")
    if spec.out_of_bound not in OUT_OF_BOUND_POLICIES:
        raise ValueError(f"out_of_bound {spec.out_of_bound!r}: use one of {', '.join(OUT_OF_BOUND_POLICIES)}")
    positions = start + np.arange(spec.num_frames, dtype=np.float64) * spec.stride(fps)
    # floor(x + 0.5): nearest frame, halves rounded up (np.round would round halves to even)
    nearest = np.floor(positions + 0.5).astype(np.int64)
    past_end = nearest > video_frames - 1
    if spec.out_of_bound == "loop":
        indices = nearest % video_frames
    else:
        indices = np.minimum(nearest, video_frames - 1)
    return ClipIndices(indices, clip_index, int(past_end.sum()))


def random_clip(spec: ClipSpec, video_frames: int, fps: float,
                generator: torch.Generator | None = None) -> ClipIndices:
    """Training: a clip starting at an integer drawn uniformly from ``[0, n - span]``.

    Uses torch's generator (the global one by default), which the dataset seeds per item.
    """
    starts = math.floor(video_frames - spec.span(fps) + 1)
    start = int(torch.randint(starts, (), generator=generator)) if starts > 0 else 0
    return clip_at(spec, video_frames, fps, start)


def repeated_clips(spec: ClipSpec, video_frames: int, fps: float, count: int, window: float = 1.0,
                   generator: torch.Generator | None = None) -> list[ClipIndices]:
    """Repeated sampling: ``count`` training clips with independent starts inside one window.

    The window covers ``length = window * span`` frames (``window >= 1``) and starts at an
    integer ``w`` drawn uniformly from ``[0, n - length]``, as a training clip would. Each clip
    starts a whole number ``m`` of sampling steps after it, ``w + m * stride``, with ``m`` drawn
    independently from ``[0, M]``, the steps that keep its last frame (``span - stride`` after its
    start) inside the window: ``M = floor((length - span + stride - 1) / stride)``. Whole steps
    put the clips on one grid, so two clips ``d`` steps apart share all but ``d`` of their frames
    and one decode serves them with ``num_frames + d`` frames. With ``window = 1.0`` (``M = 0``)
    the clips are the same frames, augmented independently (VideoMAE's repeated augmentation);
    ``window = 1.5`` lets them start up to half a span apart. A video shorter than the window is
    the window (clips past its end loop as in :func:`clip_at`).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if window < 1.0:
        raise ValueError(f"window must be >= 1.0 (a multiple of the clip span), got {window:g}")
    span, stride = spec.span(fps), spec.stride(fps)
    length = min(window * span, float(video_frames))
    window_starts = math.floor(video_frames - length + 1)
    first = int(torch.randint(window_starts, (), generator=generator)) if window_starts > 0 else 0
    steps = max(math.floor((length - span + stride - 1) / stride), 0) + 1
    offsets = torch.randint(steps, (count,), generator=generator).tolist()
    return [clip_at(spec, video_frames, fps, first + offset * stride) for offset in offsets]


def clip_starts(spec: ClipSpec, video_frames: int, fps: float, num_clips: int) -> list[int]:
    """Start frames of the ``num_clips`` segment-centred test clips (mmaction's test mode)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    span = spec.span(fps)
    if video_frames <= span - 1:
        return [0] * num_clips
    interval = (video_frames - span + 1) / num_clips
    # float64 as mmaction computes it, so the same frames are chosen
    return [int(k * interval + interval / 2.0) for k in range(num_clips)]


def segment_clip(spec: ClipSpec, video_frames: int, fps: float, clip_index: int, num_clips: int) -> ClipIndices:
    """Test: clip ``clip_index`` of ``num_clips``, centred in its segment (see the module doc)."""
    if not 0 <= clip_index < num_clips:
        raise IndexError(f"clip_index {clip_index} outside [0, {num_clips})")
    return clip_at(spec, video_frames, fps, clip_starts(spec, video_frames, fps, num_clips)[clip_index], clip_index)


def centre_clip(spec: ClipSpec, video_frames: int, fps: float) -> ClipIndices:
    """Validation (and the 1-view test headline): the one segment-centred clip."""
    return segment_clip(spec, video_frames, fps, 0, 1)


def sliding_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Time windows ``[start, end)`` in seconds covering a video of ``duration`` seconds.

    Windows start at 0, ``stride``, ``2 * stride``, ... while they fit; when the last one
    ends before the video does, one more window ends exactly at the end, so every second
    is covered by a full-length window. A video shorter than ``window`` gets one window,
    the whole video.

    Raises:
        ValueError: ``window`` or ``stride`` is not > 0, or ``duration`` is not > 0.
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window {window:g} s and stride {stride:g} s must be > 0")
    if duration <= 0:
        raise ValueError(f"a video of {duration:g} s has no windows")
    if duration <= window:
        return [(0.0, float(duration))]
    # a tolerance: 10 s / 2 s windows must not lose their last one to 9.999999 + 2 > 10
    count = int(math.floor((duration - window) / stride + 1e-9)) + 1
    windows = [(k * stride, k * stride + window) for k in range(count)]
    if windows[-1][1] < duration - 1e-9:
        windows.append((duration - window, float(duration)))
    return windows


def frame_window(start_s: float, end_s: float, video_frames: int, fps: float) -> tuple[int, int]:
    """The frames ``[first, first + count)`` of the time window ``[start_s, end_s)`` of a video
    with ``video_frames`` frames at ``fps`` (nearest frames; at least one frame).

    Raises:
        ValueError: the window starts at or after the video's last frame.
    """
    if fps <= 0:
        raise ValueError(f"frame rate must be > 0, got {fps}")
    first = int(math.floor(start_s * fps + 0.5))
    if first >= video_frames:
        raise ValueError(f"window {start_s:g}-{end_s:g} s starts after the video's {video_frames} frames "
                         f"({video_frames / fps:.2f} s)")
    end = min(video_frames, int(math.floor(end_s * fps + 0.5)))
    return first, max(end - first, 1)
