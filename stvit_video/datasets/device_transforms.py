"""The part of the transform that runs on the device, on whole uint8 batches.

Workers return uint8 ``(B, C, T, H, W)`` batches (see :mod:`stvit_video.datasets.loader`);
the trainer and tester move them with ``.to(device, non_blocking=True)`` and then call a
:class:`DeviceTransform`, which

- normalises every batch to float32 ``(x / 255 - mean) / std`` per channel, in one kernel
  (``shift + x * scale`` with ``scale = 1 / (255 std)``, ``shift = -mean / std``; equal to
  :func:`~stvit_video.datasets.transforms.normalize_to_cthw` within 1e-6), with the constants
  cached per device;
- in training only, applies timm's ``RandomErasing`` per clip after normalisation (as timm
  does for images), seeing the clip as one image of ``C*T`` channels so the same box is erased
  in every frame; the random values of ``"pixel"`` / ``"rand"`` modes are drawn on the device.

    transform = build_device_transform(cfg)
    frames = transform(batch.frames.to(device, non_blocking=True), train=True)
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from fvcore.common.config import CfgNode

__all__ = ["ERASE_MODES", "DeviceTransform", "build_device_transform"]

# AUG.RE_MODE values, timm's erase fills: normal noise per pixel, one normal colour per box and
# channel (here per channel and frame), zeros
ERASE_MODES = ("pixel", "rand", "const")


class DeviceTransform:
    """uint8 (B, C, T, H, W) batch on any device -> float32 (B, C, T, H, W), normalised.

    Args:
        mean, std: per-channel statistics in [0, 1] units (``DATA.MEAN``, ``DATA.STD``).
        erase_prob: probability of random erasing per clip in training (``AUG.RE_PROB``; 0 = off).
        erase_mode: one of :data:`ERASE_MODES` (``AUG.RE_MODE``).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, erase_prob: float = 0.0,
                 erase_mode: str = "pixel") -> None:
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean {list(mean)} and std {list(std)} need one value per channel each")
        if any(s <= 0 for s in std):
            raise ValueError(f"std {list(std)} must be > 0")
        if not 0.0 <= erase_prob <= 1.0:
            raise ValueError(f"erase_prob {erase_prob} must be in [0, 1]")
        if erase_mode not in ERASE_MODES:
            raise ValueError(f"erase_mode {erase_mode!r}: use one of {', '.join(ERASE_MODES)}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.erase_prob, self.erase_mode = erase_prob, erase_mode
        std_t = torch.tensor(self.std, dtype=torch.float64)
        # computed in float64, stored in float32: (1, C, 1, 1, 1) to broadcast over (B, C, T, H, W)
        self._scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1, 1)
        self._shift = (-torch.tensor(self.mean, dtype=torch.float64) / std_t).float().view(1, -1, 1, 1, 1)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._erasers: dict[torch.device, Callable[[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, frames: torch.Tensor, train: bool) -> torch.Tensor:
        """Normalise (and in training randomly erase) a batch on its own device.

        Args:
            frames: uint8 (B, C, T, H, W), C = len(mean).
            train: apply random erasing (when ``erase_prob > 0``).

        Returns:
            float32 (B, C, T, H, W), contiguous, on ``frames.device``.
        """
        if frames.ndim != 5 or frames.dtype != torch.uint8 or frames.shape[1] != len(self.mean):
            raise ValueError(f"DeviceTransform expects a uint8 (B, C={len(self.mean)}, T, H, W) batch, "
                             f"got {tuple(frames.shape)} {frames.dtype}")
        scale, shift = self._on(frames.device)
        # one kernel: uint8 read (loader batches are channels_last_3d), contiguous float32 written
        x = torch.addcmul(shift, frames, scale,
                          out=torch.empty(frames.shape, dtype=torch.float32, device=frames.device))
        if train and self.erase_prob > 0:
            b, c, t, h, w = x.shape
            # a (B, C*T, H, W) view: timm erases each clip in place, one box through every frame
            self._eraser(x.device)(x.view(b, c * t, h, w))
        return x

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), float32 (1, C, 1, 1, 1) on the CPU: normalised = uint8 frames * scale + shift."""
        return self._scale.clone(), self._shift.clone()

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._constants:
            self._constants[device] = (self._scale.to(device), self._shift.to(device))
        return self._constants[device]

    def _eraser(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        if device not in self._erasers:
            from timm.data.random_erasing import RandomErasing

            # timm draws the fill on its `device`: the batch's own, so no host-to-device copy
            self._erasers[device] = RandomErasing(probability=self.erase_prob, mode=self.erase_mode,
                                                  device=device)
        return self._erasers[device]

    def __repr__(self) -> str:
        return (f"DeviceTransform(mean={self.mean}, std={self.std}, erase_prob={self.erase_prob}, "
                f"erase_mode={self.erase_mode!r})")


def build_device_transform(cfg: CfgNode) -> DeviceTransform:
    """From ``DATA.MEAN`` / ``DATA.STD`` and, when ``AUG.ENABLE``, ``AUG.RE_PROB`` / ``AUG.RE_MODE``."""
    return DeviceTransform(cfg.DATA.MEAN, cfg.DATA.STD, erase_prob=cfg.AUG.RE_PROB if cfg.AUG.ENABLE else 0.0,
                           erase_mode=cfg.AUG.RE_MODE)
