"""Shared pieces of the checkpoint converters: the load report, the error, state-dict unwrapping,
derived buffers and 2D -> 3D bias tables. Used by :mod:`.weights` and :mod:`.stvit_r2d`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from stvit_video.utils.errors import CheckpointError

__all__ = ["CheckpointLoadError", "DERIVED_BUFFERS", "LoadReport", "drop_derived", "inflate_bias_table",
           "key_problems", "unwrap_state_dict"]

logger = logging.getLogger(__name__)

# Buffers the official models save but we recompute from the window size.
DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


class CheckpointLoadError(CheckpointError):
    """A checkpoint does not fit the model; the message names the keys and shapes."""


@dataclass
class LoadReport:
    """What a load did, key by key.

    Attributes:
        loaded: model keys taken from the checkpoint.
        fresh: model keys left at their initialisation, with the reason.
        unused: checkpoint keys not used, with the reason.
    """

    loaded: list[str] = field(default_factory=list)
    fresh: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)

    def log(self, log: logging.Logger = logger) -> None:
        log.info("loaded %d tensors from the checkpoint", len(self.loaded))
        for name, why in self.fresh.items():
            log.info("freshly initialised: %s (%s)", name, why)
        for name, why in self.unused.items():
            log.info("checkpoint key not used: %s (%s)", name, why)


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: ``state_dict`` / ``model`` / ``module`` wrappers and
    DDP's ``module.`` prefix removed."""
    sd: Any = checkpoint
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointLoadError("checkpoint holds no state dict of tensors (looked for 'state_dict', "
                                  "'model', 'module' or a bare dict)")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def drop_derived(sd: dict[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    """``sd`` without the buffers models recompute (index tables, masks), each reported unused."""
    out = {}
    for k, v in sd.items():
        if k.rsplit(".", 1)[-1] in DERIVED_BUFFERS:
            report.unused[k] = "derived buffer, recomputed by the model"
        else:
            out[k] = v
    return out


def inflate_bias_table(key: str, table: torch.Tensor, rows_3d: int, window_size: Sequence[int]) -> torch.Tensor:
    """A 2D relative-position bias table ((2w-1)^2, heads) -> the 3D window's table.

    Resized bicubically to (2wh-1) x (2ww-1) when the 2D window differs, then tiled over the
    2wd-1 temporal offsets (rows are indexed d-major), so every temporal offset starts with
    the 2D bias. ``rows_3d`` is the model table's row count, checked against ``window_size``.
    """
    wd, wh, ww = window_size
    rows_2d = (2 * wh - 1) * (2 * ww - 1)
    if rows_3d != (2 * wd - 1) * rows_2d:
        raise CheckpointLoadError(f"{key}: model table has {rows_3d} rows, not (2*{wd}-1) x {rows_2d}")
    L, heads = table.shape
    if L != rows_2d:
        side = math.isqrt(L)
        if side * side != L:
            raise CheckpointLoadError(f"{key}: 2D table with {L} rows is not square")
        grid = table.T.reshape(1, heads, side, side)
        table = F.interpolate(grid, size=(2 * wh - 1, 2 * ww - 1), mode="bicubic",
                              align_corners=False).reshape(heads, rows_2d).T
    # rows are indexed d-major, so tiling gives every temporal offset the 2D table
    return table.repeat(2 * wd - 1, 1)


def key_problems(state: Mapping[str, torch.Tensor], target_shapes: Mapping[str, Sequence[int]], *,
                 fresh: Sequence[str] = (), limit: int = 0) -> list[str]:
    """What keeps ``state`` from loading into a model with ``target_shapes``, one phrase each:
    model keys missing from it (except ``fresh`` ones), keys the model lacks, shape mismatches.

    Args:
        limit: name at most this many keys per phrase (0 = all), then "... and N more".

    Returns:
        Phrases such as ``"missing from the checkpoint: a, b"``; empty when it loads strictly.
    """
    def names(keys: list[str], sep: str = ", ") -> str:
        shown = keys if not limit or len(keys) <= limit else keys[:limit] + [f"... and {len(keys) - limit} more"]
        return sep.join(shown)

    fresh = set(fresh)
    missing = [k for k in target_shapes if k not in state and k not in fresh]
    unexpected = [k for k in state if k not in target_shapes]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target_shapes[k])}"
                  for k, v in state.items() if k in target_shapes and tuple(v.shape) != tuple(target_shapes[k])]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {names(missing)}")
    if unexpected:
        problems.append(f"not in the model: {names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {names(mismatched, '; ')}")
    return problems
