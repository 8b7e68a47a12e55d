"""The multi-view core shared by the tester and prediction: run every view of a loader's videos,
assemble the views of all ranks, and apply the test transform a checkpoint records.

    views      V = clips x crops per video, view ``clip * num_crops + crop``
               (:mod:`stvit_video.utils.view_grid`); each loader item is one decoded clip cut
               into its crops
    sharding   a rank's loader holds items r, r + R, ... (no padding); :func:`assemble_views`
               checks that every (video, view) pair arrived exactly once
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from stvit_video.config.access import get_key, with_values
from stvit_video.engine.train_loop import autocast_or_fp32

__all__ = ["ViewLogits", "assemble_views", "run_views", "stored_transform_keys", "with_stored_transform"]

logger = logging.getLogger(__name__)

# config keys the stored test transform of a checkpoint sets (a key absent in an older file keeps
# the config's value)
_TRANSFORM_KEYS = {"mean": "DATA.MEAN", "std": "DATA.STD", "crop": "DATA.TEST_CROP_SIZE",
                   "short_side": "DATA.TEST_SHORT_SIDE",
                   "num_frames": "DATA.NUM_FRAMES", "sampling_rate": "DATA.SAMPLING_RATE",
                   "target_fps": "DATA.TARGET_FPS", "out_of_bound": "DATA.OUT_OF_BOUND"}


@dataclass
class ViewLogits:
    """Per-view outputs of one rank, in the order its loader produced them.

    Attributes:
        video_index, view_index: (M,) int64.
        logits: (M, K) float32 (zeros for failed views).
        failed: (M,) bool.
        failures: video row -> decoder's reason.
    """

    video_index: np.ndarray
    view_index: np.ndarray
    logits: np.ndarray
    failed: np.ndarray
    failures: dict[int, str]


def _like(now: Any, value: Any) -> Any:
    """``value`` in the type of the config's current value (yacs refuses a float for an int key)."""
    if isinstance(now, (list, tuple)):
        return [_like(n, v) for n, v in zip(list(now) + [now[-1]] * len(value), value)] if now else list(value)
    if isinstance(now, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def stored_transform_keys(cfg: CfgNode, stored: dict[str, Any]) -> dict[str, Any]:
    """Config key (``DATA.MEAN``, ...) -> the checkpoint's test-transform value, typed like ``cfg``'s;
    keys a file of an older version lacks keep the config's value."""
    values = dict(stored)
    if values.get("short_side") == values.get("crop"):
        values["short_side"] = 0  # the default: the short side scaled to the crop
    return {key: _like(get_key(cfg, key), values[field]) for field, key in _TRANSFORM_KEYS.items() if field in values}


def with_stored_transform(cfg: CfgNode, stored: dict[str, Any], source: Optional[Path] = None) -> CfgNode:
    """``cfg`` with the checkpoint's test transform; with a ``source``, warns about every key
    the checkpoint changes (a config asking for another transform than the model was trained with)."""
    changes = {}
    for key, value in stored_transform_keys(cfg, stored).items():
        now = get_key(cfg, key)
        if (list(now) if isinstance(now, (list, tuple)) else now) != value:
            changes[key] = value
            if source is not None:
                logger.warning("test: %s = %s in the config, but %s was trained with %s; testing with the "
                               "checkpoint's value", key, now, source, value)
    return with_values(cfg, changes)


def run_views(model: nn.Module, loader: Any, *, device: torch.device, device_transform: Callable,
              amp: Optional[torch.dtype], max_views_per_batch: int, num_classes: int,
              frame_permutation: Optional[torch.Tensor] = None) -> ViewLogits:
    """Every view of this rank's shard: logits per (video, view), failed views flagged.

    Args:
        max_views_per_batch: largest forward pass (bounds memory; 0 = the whole loader batch).
        frame_permutation: reorder the frames of every clip along T (the temporal-shuffle check).
    """
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"video": [], "view": [], "logits": [], "failed": []}
    failures: dict[int, str] = {}
    with torch.inference_mode(), autocast_or_fp32(device.type, amp):
        for batch in loader:
            frames = device_transform(batch.frames.to(device, non_blocking=True), False)
            if frame_permutation is not None:
                frames = frames[:, :, frame_permutation.to(device)]
            step = max_views_per_batch or frames.shape[0]
            logits = torch.cat([model(chunk).float() for chunk in frames.split(step)])
            failed = batch.failed.numpy()
            out = logits.cpu().numpy()
            out[failed] = 0.0
            parts["video"].append(batch.video_index.numpy())
            parts["view"].append(batch.view_index.numpy())
            parts["logits"].append(out)
            parts["failed"].append(failed)
            if failed.any():
                failures.update(batch.failure_reasons())
    if not parts["video"]:
        empty = np.zeros(0, dtype=np.int64)
        return ViewLogits(empty, empty, np.zeros((0, num_classes), np.float32), np.zeros(0, bool), {})
    return ViewLogits(np.concatenate(parts["video"]), np.concatenate(parts["view"]),
                      np.concatenate(parts["logits"]), np.concatenate(parts["failed"]), failures)


def assemble_views(parts: list[ViewLogits], num_videos: int, views: int, num_classes: int) -> tuple[np.ndarray, ...]:
    """Gathered shards -> (N, V, K) logits and (N, V) valid; every pair exactly once."""
    logits = np.zeros((num_videos, views, num_classes), dtype=np.float32)
    seen = np.zeros((num_videos, views), dtype=np.int64)
    valid = np.zeros((num_videos, views), dtype=bool)
    for p in parts:
        logits[p.video_index, p.view_index] = p.logits
        np.add.at(seen, (p.video_index, p.view_index), 1)
        valid[p.video_index, p.view_index] = ~p.failed
    if not (seen == 1).all():
        twice, lost = int((seen > 1).sum()), int((seen == 0).sum())
        raise RuntimeError(f"test: views gathered wrongly across ranks ({twice} counted more than once, {lost} "
                           "missing); this is a bug, please report it")
    return logits, valid
