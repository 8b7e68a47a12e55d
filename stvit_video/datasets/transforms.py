"""Spatial transforms of video clips: small pure tensor functions, then one class per split.

Layouts: decoders give uint8 ``(T, H, W, C)``; :func:`to_tchw` views it as uint8
``(T, C, H, W)`` (no copy), the layout of torchvision's video ops and of pytorchvideo's
RandAugment. Everything here runs on uint8, where torchvision's resize has a fast path (about
3x faster than on float). The split transforms end with uint8 ``(V, C, T, H, W)`` in
``channels_last_3d`` memory (:func:`stack_views`): ``V`` views of one decoded clip, which the
loader stacks into uint8 ``(B, C, T, H, W)`` batches in the same memory order (4x less host
memory, pinning and host-to-device traffic than float32). Normalisation and
random erasing run on the device, on the whole batch
(:class:`stvit_video.datasets.device_transforms.DeviceTransform`); :func:`normalize_to_cthw`
is the same normalisation for one clip on the host (inference on a single video, tests).
Randomness comes from torch's and Python's global generators, which the DataLoader seeds per
worker.

Per split (SlowFast conventions):

- train: short side scaled to a random size in ``DATA.TRAIN_JITTER_SCALES`` and a random
  ``TRAIN_CROP_SIZE`` crop, in one resize of the crop's box (:func:`random_scaled_crop`) (or, when ``DATA.TRAIN_JITTER_SCALES_RELATIVE`` is set, an
  Inception-style random resized crop) -> horizontal flip with p = 0.5 -> [RandAugment, the
  same ops in every frame, on the crop as in timm]; ``V`` = ``AUG.NUM_SAMPLE`` independent
  augmentations of the clip. [Normalisation and random erasing follow on the device.]
- val: short side scaled to ``TRAIN_JITTER_SCALES[0]``, centre ``TRAIN_CROP_SIZE`` crop (V = 1).
- test: short side scaled to ``TEST_CROP_SIZE`` once, then ``V`` = 1 (centre) or 3 (left,
  centre, right of the long side; top/centre/bottom for portrait videos) ``TEST_CROP_SIZE``
  crops of the same scaled clip.
"""
from __future__ import annotations

import math
import re
from typing import Callable, NamedTuple, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import RandomResizedCrop

from stvit_video.utils.errors import ConfigError
from stvit_video.utils.view_grid import crop_positions

__all__ = [
    "EvalTransform", "RandAugmentParams", "TrainTransform", "horizontal_flip", "normalize_to_cthw",
    "parse_rand_augment", "random_crop", "random_resized_crop", "random_scaled_crop", "random_short_side_scale",
    "scaled_size", "short_side_scale", "stack_views", "to_tchw", "uniform_crop",
]


def _check_tchw(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ValueError(f"{name} expects a (T, C, H, W) uint8 tensor, got {tuple(x.shape)} {x.dtype}")


def to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) decoded frames -> uint8 (T, C, H, W) view (channels-last memory)."""
    if frames.ndim != 4 or frames.dtype != torch.uint8:
        raise ValueError(f"to_tchw expects (T, H, W, C) uint8 frames, got {tuple(frames.shape)} {frames.dtype}")
    return frames.permute(0, 3, 1, 2)


def short_side_scale(x: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Scale (T, C, H, W) uint8 so that min(H, W) == size; the long side is floor(long * size /
    short) as in pytorchvideo and SlowFast. Bilinear, antialiased when shrinking (``antialias``)."""
    _check_tchw(x, "short_side_scale")
    height, width = x.shape[-2:]
    if min(height, width) == size:
        return x
    return TF.resize(x, list(scaled_size(height, width, size)), antialias=antialias)


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(H, W) of a frame whose short side is scaled to ``short_side``; the long side is
    floor(long * short_side / short), as in pytorchvideo and SlowFast."""
    if width < height:
        return int(math.floor(height / width * short_side)), short_side
    return short_side, int(math.floor(width / height * short_side))


def random_short_side_scale(x: torch.Tensor, min_size: int, max_size: int, antialias: bool = True) -> torch.Tensor:
    """Scale (T, C, H, W) uint8 so min(H, W) is uniform in [min_size, max_size] (inclusive)."""
    size = int(torch.randint(min_size, max_size + 1, ()))
    return short_side_scale(x, size, antialias)


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square ``size`` crop (a view) at a uniformly random position of (..., H, W); H, W >= size."""
    height, width = x.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"random_crop of {size} from a {height}x{width} clip; scale it first")
    top = int(torch.randint(0, height - size + 1, ()))
    left = int(torch.randint(0, width - size + 1, ()))
    return x[..., top : top + size, left : left + size]


def random_scaled_crop(x: torch.Tensor, size: int, min_size: int, max_size: int,
                       antialias: bool = True) -> torch.Tensor:
    """:func:`random_short_side_scale` then :func:`random_crop` (the same three draws: short side,
    top, left), resizing only the crop's box: uint8 (T, C, H, W) -> (T, C, size, size).

    The box is the crop's region mapped back to source pixels and rounded to whole pixels, so
    the scale is the drawn one within half a source pixel over the crop (< 0.5% for a 224 crop)
    and the position within half a pixel. Interpolating ``size x size`` pixels instead of the whole
    scaled frame takes 2.2 ms instead of 5.4-6.2 ms for 32 frames of 340x256 scaled to 288-320
    (one thread), a fifth of a training item. At scale 1 the crop is a view.
    """
    _check_tchw(x, "random_scaled_crop")
    height, width = x.shape[-2:]
    short = int(torch.randint(min_size, max_size + 1, ()))
    new_h, new_w = (height, width) if min(height, width) == short else scaled_size(height, width, short)
    if new_h < size or new_w < size:
        raise ValueError(f"random_scaled_crop of {size} from a {height}x{width} clip scaled to {new_h}x{new_w}")
    top = int(torch.randint(0, new_h - size + 1, ()))
    left = int(torch.randint(0, new_w - size + 1, ()))
    box_h, box_w = _source_extent(size, height, new_h), _source_extent(size, width, new_w)
    box_top = min(round(top * height / new_h), height - box_h)
    box_left = min(round(left * width / new_w), width - box_w)
    if (box_h, box_w) == (size, size):
        return x[..., box_top : box_top + size, box_left : box_left + size]
    return TF.resized_crop(x, box_top, box_left, box_h, box_w, [size, size], antialias=antialias)


def _source_extent(size: int, source: int, scaled: int) -> int:
    """Source pixels that ``size`` pixels of a frame scaled from ``source`` to ``scaled`` cover."""
    return min(max(round(size * source / scaled), 1), source)


def uniform_crop(x: torch.Tensor, size: int, spatial_index: int) -> torch.Tensor:
    """Square ``size`` crop (a view) of (..., H, W): ``spatial_index`` 0/1/2 = left/centre/right
    along the long side (top/centre/bottom when H > W); the centre is rounded up, as in SlowFast."""
    height, width = x.shape[-2:]
    if min(height, width) < size:
        raise ValueError(f"uniform_crop of {size} from a {height}x{width} clip; scale it first")
    if spatial_index not in (0, 1, 2):
        raise ValueError(f"spatial_index must be 0, 1 or 2, got {spatial_index}")
    top, left = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if spatial_index != 1 and height > width:
        top = 0 if spatial_index == 0 else height - size
    elif spatial_index != 1:
        left = 0 if spatial_index == 0 else width - size
    return x[..., top : top + size, left : left + size]


def horizontal_flip(x: torch.Tensor, prob: float = 0.5) -> torch.Tensor:
    """Flip (..., H, W) left-right with probability ``prob``."""
    return x.flip(-1) if float(torch.rand(())) < prob else x


def random_resized_crop(x: torch.Tensor, size: int, scale: Sequence[float],
                        aspect_ratio: Sequence[float], antialias: bool = True) -> torch.Tensor:
    """Inception-style crop of (T, C, H, W) uint8: area fraction in ``scale``, aspect ratio in
    ``aspect_ratio`` (log-uniform), resized to ``size x size``; the same box in every frame."""
    _check_tchw(x, "random_resized_crop")
    top, left, height, width = RandomResizedCrop.get_params(x, list(scale), list(aspect_ratio))
    return TF.resized_crop(x, top, left, height, width, [size, size], antialias=antialias)


def stack_views(views: Sequence[torch.Tensor]) -> torch.Tensor:
    """uint8 (T, C, H, W) views (crops may be strided slices) -> uint8 (V, C, T, H, W) in
    ``torch.channels_last_3d`` memory.

    The memory keeps the decoder's (T, H, W, C) order, which the resize and the flip keep too:
    one plain copy per view (0.1 ms at 32 x 224 x 224), where writing the (C, T, H, W) order took
    a channel de-interleave of ~3 ms, 10% of a training item. The device transform makes the
    batch contiguous as it normalises it.
    """
    for view in views:
        _check_tchw(view, "stack_views")
    t, c, h, w = views[0].shape
    out = torch.empty((len(views), t, h, w, c), dtype=torch.uint8)
    for i, view in enumerate(views):
        out[i].copy_(view.permute(0, 2, 3, 1))  # (T, H, W, C)
    return out.permute(0, 4, 1, 2, 3)  # (V, C, T, H, W)


def normalize_to_cthw(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> contiguous float32 (C, T, H, W) with ``(x / 255 - mean) / std`` per channel."""
    _check_tchw(x, "normalize_to_cthw")
    out = torch.empty((x.shape[1], x.shape[0], *x.shape[2:]), dtype=torch.float32)
    out.copy_(x.permute(1, 0, 2, 3))
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1) * 255.0
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1, 1) * 255.0
    return out.sub_(mean_t).div_(std_t)


class RandAugmentParams(NamedTuple):
    """Parsed ``AUG.AA_TYPE`` string such as ``rand-m7-n4-mstd0.5-inc1``."""

    magnitude: int
    num_layers: int
    magnitude_std: float
    prob: float


def parse_rand_augment(spec: str) -> RandAugmentParams:
    """Parse a timm-style RandAugment string: ``rand`` then ``-m<magnitude>``,
    ``-n<layers>``, ``-mstd<std>``, ``-p<prob>``, ``-inc<0|1>`` (accepted; the video ops are
    already increasing with magnitude).

    Raises:
        ConfigError: naming ``AUG.AA_TYPE`` and the part that cannot be parsed.
    """
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ConfigError(f"AUG.AA_TYPE = {spec!r}: must start with 'rand' (e.g. 'rand-m7-n4-mstd0.5-inc1')")
    values = {"m": 9.0, "n": 2.0, "mstd": 0.5, "p": 0.5, "inc": 1.0}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|inc|m|n|p)(\d+(?:\.\d+)?)", part)
        if match is None:
            raise ConfigError(f"AUG.AA_TYPE = {spec!r}: cannot parse {part!r}; known parts are "
                              "m<int>, n<int>, mstd<float>, p<float>, inc<0|1>")
        values[match.group(1)] = float(match.group(2))
    if not 0.0 <= values["p"] <= 1.0:
        raise ConfigError(f"AUG.AA_TYPE = {spec!r}: p must be in [0, 1]")
    return RandAugmentParams(int(values["m"]), int(values["n"]), values["mstd"], values["p"])


def _build_rand_augment(params: RandAugmentParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorchvideo's video RandAugment: uint8 (T, C, H, W), same ops and magnitudes for all frames."""
    from stvit_video.compat import apply as apply_compat

    apply_compat()  # pytorchvideo 0.1.5 imports a torchvision module renamed in 0.17
    from pytorchvideo.transforms import RandAugment

    sampling = "gaussian" if params.magnitude_std > 0 else "uniform"
    hparas = {"sampling_data_type": "int", "sampling_min": 0, "sampling_std": params.magnitude_std}
    return RandAugment(magnitude=params.magnitude, num_layers=params.num_layers, prob=params.prob,
                       sampling_type=sampling, sampling_hparas=hparas)


class TrainTransform:
    """uint8 (T, H, W, C) frames -> ``num_views`` augmented uint8 (C, T, crop, crop) clips.

    ``antialias``: antialiased bilinear when a resize shrinks (``DATA.TRAIN_RESIZE_ANTIALIAS``).
    The references train without it (mmaction's cv2 bilinear, SlowFast's and pytorchvideo's
    ``F.interpolate``); it costs about twice the resize time of a shrinking crop.
    """

    def __init__(self, *, crop_size: int, jitter_scales: Sequence[int], relative_scales: Sequence[float] = (),
                 relative_aspect: Sequence[float] = (0.75, 4 / 3), rand_augment: str = "",
                 flip: bool = True, antialias: bool = False) -> None:
        self.crop_size = crop_size
        self.flip = flip
        self.antialias = antialias
        self.jitter_scales = tuple(jitter_scales)
        self.relative_scales = tuple(relative_scales)
        self.relative_aspect = tuple(relative_aspect)
        self.rand_augment_spec = rand_augment
        self._rand_augment = _build_rand_augment(parse_rand_augment(rand_augment)) if rand_augment else None

    def __call__(self, frames: torch.Tensor | Sequence[torch.Tensor], num_views: int = 1) -> torch.Tensor:
        """uint8 (T, H, W, C) -> uint8 (num_views, C, T, crop, crop), each view augmented anew; a
        sequence of K clips (repeated sampling) -> (K x num_views, ...), clip by clip, in one copy."""
        clips = [frames] if isinstance(frames, torch.Tensor) else frames
        return stack_views([self._augment(to_tchw(clip)) for clip in clips for _ in range(num_views)])

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (T, C, H, W) -> uint8 (T, C, crop, crop)."""
        if self.relative_scales:
            x = random_resized_crop(x, self.crop_size, self.relative_scales, self.relative_aspect, self.antialias)
        else:
            x = random_scaled_crop(x, self.crop_size, *self.jitter_scales, self.antialias)
        if self.flip:
            x = horizontal_flip(x)
        if self._rand_augment is not None:  # on the crop, as timm does: fewer pixels to augment
            x = self._rand_augment(x)
        return x

    def __repr__(self) -> str:
        spatial = (f"random_resized_crop(scale={self.relative_scales}, aspect={self.relative_aspect})"
                   if self.relative_scales else f"short_side in {list(self.jitter_scales)}, random_crop")
        return (f"TrainTransform(crop={self.crop_size}, {spatial}, flip={0.5 if self.flip else 0.0}, "
                f"antialias={self.antialias}, rand_augment={self.rand_augment_spec!r}, uint8 out)")


class EvalTransform:
    """uint8 (T, H, W, C) frames -> uint8 (num_crops, C, T, crop, crop): short side scaled once,
    then the centre crop (``num_crops = 1``) or the left, centre and right crops (3)."""

    def __init__(self, *, short_side: int, crop_size: int) -> None:
        if crop_size > short_side:
            raise ValueError(f"crop {crop_size} larger than the short side {short_side}")
        self.short_side, self.crop_size = short_side, crop_size

    def __call__(self, frames: torch.Tensor, num_crops: int = 1) -> torch.Tensor:
        """uint8 (T, H, W, C) -> uint8 (num_crops, C, T, crop, crop), crops in spatial order."""
        positions = crop_positions(num_crops)
        x = short_side_scale(to_tchw(frames), self.short_side)
        return stack_views([uniform_crop(x, self.crop_size, i) for i in positions])

    def __repr__(self) -> str:
        return f"EvalTransform(short_side={self.short_side}, crop={self.crop_size}, uint8 out)"
