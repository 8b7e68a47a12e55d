"""MixUp / CutMix with label smoothing for video batches, on top of timm's ``Mixup``.

timm's ``Mixup`` assumes images: its CutMix writes ``x[:, :, y0:y1, x0:x1]``, which on a
``(B, C, T, H, W)`` batch would cut along T and H. Viewing the batch as ``(B, C*T, H, W)``
makes timm cut the same spatial box out of every frame (what video CutMix means) while MixUp,
which is elementwise, is unchanged; the view shares memory, so timm's in-place mixing lands in
the video tensor. The trainer applies it to each training batch, on the device, after the
batch is normalised (:class:`~stvit_video.datasets.device_transforms.DeviceTransform`: MixUp
needs float frames), and trains with soft-target cross-entropy on the returned
``(B, num_classes)`` targets.
"""
from __future__ import annotations

import torch
from fvcore.common.config import CfgNode

__all__ = ["VideoMixup", "build_mixup"]


class VideoMixup:
    """Batch-wise MixUp or CutMix (chosen per batch) with label smoothing.

    Args:
        mixup_alpha: Beta(alpha, alpha) for MixUp; 0 disables MixUp.
        cutmix_alpha: Beta(alpha, alpha) for CutMix; 0 disables CutMix.
        prob: probability of mixing a batch at all.
        switch_prob: probability of CutMix instead of MixUp when both are enabled.
        label_smoothing: smoothing of the one-hot targets before mixing.
        num_classes: classes of the targets.
    """

    def __init__(self, *, mixup_alpha: float, cutmix_alpha: float, prob: float, switch_prob: float,
                 label_smoothing: float, num_classes: int) -> None:
        from timm.data.mixup import Mixup

        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("VideoMixup needs mixup_alpha > 0 or cutmix_alpha > 0")
        self._mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                            switch_prob=switch_prob, mode="batch", label_smoothing=label_smoothing,
                            num_classes=num_classes)

    def __call__(self, frames: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch.

        Args:
            frames: (B, C, T, H, W) float, B even; mixed in place when contiguous.
            labels: (B,) int64 class indices.

        Returns:
            frames (B, C, T, H, W) and soft targets (B, num_classes) float whose rows sum to 1.
        """
        if frames.ndim != 5:
            raise ValueError(f"VideoMixup expects (B, C, T, H, W) frames, got {tuple(frames.shape)}")
        if frames.shape[0] % 2:
            raise ValueError(f"VideoMixup needs an even batch (it mixes each clip with the batch "
                             f"reversed), got {frames.shape[0]}; the train loader drops the last batch")
        b, c, t, h, w = frames.shape
        mixed, targets = self._mixup(frames.reshape(b, c * t, h, w), labels)
        return mixed.view(b, c, t, h, w), targets


def build_mixup(cfg: CfgNode) -> VideoMixup | None:
    """``VideoMixup`` from the ``MIXUP.*`` keys and ``TRAIN.LABEL_SMOOTHING``, or None when
    ``MIXUP.ENABLE`` is False."""
    if not cfg.MIXUP.ENABLE:
        return None
    return VideoMixup(mixup_alpha=cfg.MIXUP.ALPHA, cutmix_alpha=cfg.MIXUP.CUTMIX_ALPHA,
                      prob=cfg.MIXUP.PROB, switch_prob=cfg.MIXUP.SWITCH_PROB,
                      label_smoothing=cfg.TRAIN.LABEL_SMOOTHING, num_classes=cfg.MODEL.NUM_CLASSES)
