"""Pretrained weights: official Video Swin (mmaction) checkpoints, 2D->3D inflation of ImageNet
Swin checkpoints, and initialising STViT models from Swin weights.

Every key is accounted for. A load succeeds only when each model key is either loaded or
listed as freshly initialised for a stated reason (the new STViT layer scales and global
centres, a re-initialised head), and each checkpoint key is either loaded or listed as
unused for a stated reason (the attention bias of a Swin block an STViT block replaced, a 2D
classifier). Anything else raises :class:`CheckpointLoadError` naming the keys.

Layouts handled:
    native      our own checkpoints: ``{"model": state_dict, ...}`` or a bare state dict
    video_swin  official Video Swin / mmaction: ``{"state_dict": {"backbone.*", "cls_head.fc_cls.*"}}``
    swin2d      official ImageNet Swin: ``{"model": {"patch_embed.proj.weight" (C, 3, 4, 4), ...,
                "head.weight"}}``, inflated to 3D
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from stvit_video.utils.errors import CheckpointError

__all__ = [
    "CheckpointLoadError",
    "LoadReport",
    "CHECKPOINT_FORMATS",
    "unwrap_state_dict",
    "convert_video_swin",
    "inflate_swin2d",
    "split_qkv_for_stvit",
    "load_pretrained",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMATS = ("native", "video_swin", "swin2d")
# Buffers the official models save but we recompute from the window size.
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


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


# ----------------------------------------------------------------------------------------- #
# Layout conversions (pure functions on state dicts)
# ----------------------------------------------------------------------------------------- #
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


def _drop_derived(sd: dict[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.rsplit(".", 1)[-1] in _DERIVED_BUFFERS:
            report.unused[k] = "derived buffer, recomputed by the model"
        else:
            out[k] = v
    return out


def convert_video_swin(sd: Mapping[str, torch.Tensor], report: Optional[LoadReport] = None) -> dict[str, torch.Tensor]:
    """Official Video Swin (mmaction) keys -> ours.

    ``backbone.X`` -> ``X``; ``cls_head.fc_cls.{weight,bias}`` -> ``head.fc.{weight,bias}``;
    ``relative_position_index`` buffers dropped (recomputed). Other keys pass unchanged, so a
    strict load names anything unexpected.
    """
    report = LoadReport() if report is None else report
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            k = k[len("backbone."):]
        elif k.startswith("cls_head.fc_cls."):
            k = "head.fc." + k[len("cls_head.fc_cls."):]
        out[k] = v
    return _drop_derived(out, report)


def inflate_swin2d(sd: Mapping[str, torch.Tensor], model: nn.Module,
                   report: Optional[LoadReport] = None) -> dict[str, torch.Tensor]:
    """Inflate an official ImageNet Swin state dict to the 3D ``model``.

    - ``patch_embed.proj.weight`` (C, 3, ph, pw) -> (C, 3, pt, ph, pw), repeated over time and
      divided by pt, so a temporally constant clip gives the 2D embedding;
    - each ``relative_position_bias_table`` ((2w-1)^2, heads) is resized bicubically to the
      3D window's (2wh-1) x (2ww-1) if the windows differ, then tiled over the 2wd-1 temporal
      offsets;
    - the 2D classifier (``head.*``) is dropped (reported); derived buffers are dropped.
    """
    report = LoadReport() if report is None else report
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in _drop_derived(dict(sd), report).items():
        if k.startswith("head."):
            report.unused[k] = "2D ImageNet classifier"
            continue
        if k == "patch_embed.proj.weight" and v.ndim == 4 and k in target:
            pt = target[k].shape[2]
            v = v.unsqueeze(2).repeat(1, 1, pt, 1, 1) / pt
        elif k.endswith("relative_position_bias_table") and k in target:
            v = _inflate_bias_table(k, v, target[k].shape[0], model)
        out[k] = v
    return out


def _inflate_bias_table(key: str, table: torch.Tensor, rows_3d: int, model: nn.Module) -> torch.Tensor:
    wd, wh, ww = model.window_size
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


def split_qkv_for_stvit(sd: Mapping[str, torch.Tensor], model: nn.Module,
                        report: Optional[LoadReport] = None) -> dict[str, torch.Tensor]:
    """Map a Swin state dict onto an STViT model's new blocks.

    Each STViT block takes the weights of the Swin block it replaced (same block index):
    q = the first C rows of ``attn.qkv``, kv = the remaining 2C rows; ``attn.proj``, ``norm1``,
    ``norm2`` and ``mlp`` carry over unchanged. The replaced blocks' relative position bias
    is reported unused; layer scales and global centres stay fresh (see :func:`load_pretrained`).
    """
    report = LoadReport() if report is None else report
    out = dict(sd)
    semantic = getattr(model, "semantic_parameter_names", lambda: set())()
    prefixes = sorted({n.rsplit(".attn.", 1)[0] for n in semantic if ".attn." in n})
    for prefix in prefixes:
        for kind in ("weight", "bias"):
            qkv_key = f"{prefix}.attn.qkv.{kind}"
            if qkv_key not in out:
                continue
            qkv = out.pop(qkv_key)
            C = qkv.shape[0] // 3
            out[f"{prefix}.attn.q.{kind}"] = qkv[:C].clone()
            out[f"{prefix}.attn.kv.{kind}"] = qkv[C:].clone()
        table = f"{prefix}.attn.relative_position_bias_table"
        if table in out:
            out.pop(table)
            report.unused[table] = "Swin block replaced by an STViT block (no position bias)"
    return out


# ----------------------------------------------------------------------------------------- #
# Loading
# ----------------------------------------------------------------------------------------- #
def _fresh_reasons(model: nn.Module) -> dict[str, str]:
    """Parameters that have no counterpart in any Swin checkpoint."""
    reasons = {}
    for name in getattr(model, "semantic_parameter_names", lambda: set())():
        if "layer_scale" in name:
            reasons[name] = "STViT layer scale"
        elif name.endswith("global_centres"):
            reasons[name] = "STViT global semantic centres"
    return reasons


def load_pretrained(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Any], *,
                    fmt: str = "native", reinit_head: bool = False,
                    log: Optional[logging.Logger] = logger) -> LoadReport:
    """Load weights into ``model`` with every key accounted for.

    Args:
        model: a :class:`SwinTransformer3D` or :class:`STViTSwinTransformer3D`.
        checkpoint: file path or an already loaded checkpoint dict.
        fmt: ``native``, ``video_swin`` or ``swin2d`` (see the module docstring).
        reinit_head: keep the model's fresh classifier when the checkpoint's has another
            shape or is missing (fine-tuning on other classes); otherwise that is an error.
        log: where the report goes (None = silent).

    Returns:
        The :class:`LoadReport`.

    Raises:
        CheckpointLoadError: missing or unexpected keys, or shape mismatches, by name.
    """
    if fmt not in CHECKPOINT_FORMATS:
        raise CheckpointLoadError(f"checkpoint format {fmt!r} is not one of {', '.join(CHECKPOINT_FORMATS)}")
    source = str(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "the given checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        if not os.path.isfile(checkpoint):
            raise CheckpointLoadError(f"checkpoint file {checkpoint} does not exist")
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated/corrupt files
            raise CheckpointLoadError(f"cannot read checkpoint {source}: {e}") from e
    report = LoadReport()
    sd = unwrap_state_dict(checkpoint)
    if fmt == "video_swin":
        sd = convert_video_swin(sd, report)
    elif fmt == "swin2d":
        sd = inflate_swin2d(sd, model, report)
    else:
        sd = _drop_derived(sd, report)
    if hasattr(model, "semantic_parameter_names") and not any(".attn.q." in k for k in sd):
        sd = split_qkv_for_stvit(sd, model, report)

    target = model.state_dict()
    fresh = {k: why for k, why in _fresh_reasons(model).items() if k not in sd}
    head_keys = [k for k in target if k.startswith("head.")]
    head_fits = all(k in sd and sd[k].shape == target[k].shape for k in head_keys)
    if not head_fits and reinit_head:
        for k in head_keys:
            fresh[k] = "classifier re-initialised for fine-tuning"
            if k in sd:
                report.unused[k] = f"classifier of shape {tuple(sd.pop(k).shape)}"
    missing = [k for k in target if k not in sd and k not in fresh]
    unexpected = [k for k in sd if k not in target]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in sd if k in target and sd[k].shape != target[k].shape]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing)}")
    if unexpected:
        problems.append(f"not in the model: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {'; '.join(mismatched)}")
    if problems:
        hint = " (pass reinit_head=True to fine-tune on other classes)" if any(
            k.startswith("head.") for k in missing + [m.split(":")[0] for m in mismatched]) else ""
        raise CheckpointLoadError(f"cannot load {source} as {fmt!r} into {type(model).__name__}: "
                                  + " | ".join(problems) + hint)
    model.load_state_dict(sd, strict=False)
    report.loaded = sorted(sd)
    report.fresh = fresh
    if log is not None:
        report.log(log)
    return report
