"""Pretrained weights: official Video Swin (mmaction) checkpoints, 2D->3D inflation of ImageNet
Swin checkpoints, and initialising STViT models from Swin weights.

Every key is accounted for. A load succeeds only when each model key is either loaded or
listed as freshly initialised for a stated reason (the new STViT layer scales and global
centres, a re-initialised head), and each checkpoint key is either loaded or listed as
unused for a stated reason (the attention bias of a Swin block an STViT block replaced, a 2D
classifier). Anything else raises :class:`CheckpointLoadError` naming the keys.

Layouts handled:
    native      our own checkpoints (``{"format_version": 1, "model": state_dict, ...}``, the
                version checked as :mod:`stvit_video.engine.checkpoint` checks it) or a bare
                state dict
    video_swin  official Video Swin / mmaction: ``{"state_dict": {"backbone.*", "cls_head.fc_cls.*"}}``
    torchvision torchvision's ``swin3d_t/s/b`` state dicts (``Swin3D_*_Weights.KINETICS400_V1``):
                ``features.{2i}.{j}.*`` blocks, ``features.{2i+1}.*`` patch merging, ``head.*``
    swin2d      official ImageNet Swin: ``{"model": {"patch_embed.proj.weight" (C, 3, 4, 4), ...,
                "head.weight"}}``, inflated to 3D
    stvit_r2d   released 2D STViT-R ImageNet checkpoints, inflated into a per-frame STViT-R
                model (:mod:`stvit_video.models.stvit_r2d`)
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping, Optional

import torch
from torch import nn

from stvit_video.models.conversion import (
    CheckpointLoadError,
    LoadReport,
    drop_derived,
    inflate_bias_table,
    key_problems,
    unwrap_state_dict,
)
from stvit_video.models.stvit_r2d import convert_stvit_r2d
from stvit_video.utils.checkpoint_file import format_problem, load_error_reason, read_file

__all__ = [
    "CheckpointLoadError",
    "LoadReport",
    "CHECKPOINT_FORMATS",
    "unwrap_state_dict",
    "convert_video_swin",
    "convert_torchvision",
    "swin_geometry",
    "inflate_swin2d",
    "split_qkv_for_stvit",
    "load_pretrained",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMATS = ("native", "video_swin", "torchvision", "swin2d", "stvit_r2d")
# torchvision's MLP is a Sequential (Linear, GELU, Dropout, Linear, Dropout); timm's Mlp names its linears
_TORCHVISION_MLP = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}
_TORCHVISION_FEATURE = re.compile(r"^features\.(\d+)\.(.*)$")
_TORCHVISION_BLOCK = re.compile(r"^(\d+)\.(.*)$")


# ----------------------------------------------------------------------------------------- #
# Layout conversions (pure functions on state dicts)
# ----------------------------------------------------------------------------------------- #
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
    return drop_derived(out, report)


def convert_torchvision(sd: Mapping[str, torch.Tensor], report: Optional[LoadReport] = None) -> dict[str, torch.Tensor]:
    """torchvision ``SwinTransformer3d`` keys -> ours (the official Video Swin names).

    torchvision keeps stages and patch mergings in one ``features`` Sequential: ``features.{2i}``
    is stage i's blocks, ``features.{2i+1}`` the patch merging after it. So
    ``features.{2i}.{j}.X`` -> ``layers.{i}.blocks.{j}.X`` (``mlp.0`` / ``mlp.3`` -> ``mlp.fc1`` /
    ``mlp.fc2``), ``features.{2i+1}.X`` -> ``layers.{i}.downsample.X``, ``head.*`` ->
    ``head.fc.*``; ``patch_embed.*`` and ``norm.*`` keep their names; the relative-position
    index buffers are dropped (recomputed). Unknown keys pass unchanged, so a strict load
    names them.
    """
    report = LoadReport() if report is None else report
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        feature = _TORCHVISION_FEATURE.match(k)
        if feature is not None:
            index, rest = int(feature[1]), feature[2]
            block = _TORCHVISION_BLOCK.match(rest)
            if index % 2 == 0 and block is not None:
                rest = block[2]
                for theirs, ours in _TORCHVISION_MLP.items():
                    if rest.startswith(theirs):
                        rest = ours + rest[len(theirs):]
                k = f"layers.{index // 2}.blocks.{block[1]}.{rest}"
            elif index % 2 == 1:
                k = f"layers.{index // 2}.downsample.{rest}"
        elif k.startswith("head."):
            k = "head.fc." + k[len("head."):]
        out[k] = v
    return drop_derived(out, report)


def swin_geometry(sd: Mapping[str, torch.Tensor]) -> str:
    """What Swin a state dict in our names holds, e.g. ``"embed_dim 96, depths (2, 2, 18, 2)"``
    (for messages: names the model a checkpoint of the wrong size was made for)."""
    depths: dict[int, int] = {}
    for k in sd:
        match = re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.", k)
        if match:
            stage, block = int(match[1]), int(match[2])
            depths[stage] = max(depths.get(stage, 0), block + 1)
    embed = sd.get("patch_embed.proj.weight")
    parts = []
    if embed is not None:
        parts.append(f"embed_dim {embed.shape[0]}")
    if depths:
        parts.append(f"depths {tuple(depths[i] for i in sorted(depths))}")
    return ", ".join(parts) or "no Swin keys"


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
    for k, v in drop_derived(dict(sd), report).items():
        if k.startswith("head."):
            report.unused[k] = "2D ImageNet classifier"
            continue
        if k == "patch_embed.proj.weight" and v.ndim == 4 and k in target:
            pt = target[k].shape[2]
            v = v.unsqueeze(2).repeat(1, 1, pt, 1, 1) / pt
        elif k.endswith("relative_position_bias_table") and k in target:
            v = inflate_bias_table(k, v, target[k].shape[0], model.window_size)
        out[k] = v
    return out


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
        model: a :class:`~stvit_video.models.swin3d.SwinTransformer3D`, with or without an STViT stage.
        checkpoint: file path or an already loaded checkpoint dict.
        fmt: one of :data:`CHECKPOINT_FORMATS`: ``native``, ``video_swin``, ``torchvision``,
            ``swin2d`` or ``stvit_r2d`` (see the module docstring).
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
            checkpoint = read_file(checkpoint)
        except Exception as e:  # torch raises several types for truncated/corrupt files
            raise CheckpointLoadError(f"cannot read checkpoint {source}: {load_error_reason(e)}") from e
    if fmt == "native" and isinstance(checkpoint, Mapping) and "format_version" in checkpoint:
        problem = format_problem(checkpoint, ("model",))
        if problem is not None:
            raise CheckpointLoadError(f"cannot load {source} as a stvit_video checkpoint: {problem}")
    report = LoadReport()
    sd = unwrap_state_dict(checkpoint)
    if fmt == "video_swin":
        sd = convert_video_swin(sd, report)
    elif fmt == "torchvision":
        sd = convert_torchvision(sd, report)
    elif fmt == "swin2d":
        sd = inflate_swin2d(sd, model, report)
    elif fmt == "stvit_r2d":
        sd = convert_stvit_r2d(sd, {k: v.shape for k, v in model.state_dict().items()},
                               window_size=model.window_size, report=report, log=log)
    else:
        sd = drop_derived(sd, report)
    if hasattr(model, "semantic_parameter_names") and not any(".attn.q." in k for k in sd):
        sd = split_qkv_for_stvit(sd, model, report)

    target = model.state_dict()
    fresh = {k: why for k, why in _fresh_reasons(model).items() if k not in sd}
    # what a converter left fresh on purpose (e.g. the stem of stvit_r2d); the head follows reinit_head
    fresh.update({k: why for k, why in report.fresh.items() if not k.startswith("head.")})
    head_keys = [k for k in target if k.startswith("head.")]
    head_fits = all(k in sd and sd[k].shape == target[k].shape for k in head_keys)
    if not head_fits and reinit_head:
        for k in head_keys:
            fresh[k] = "classifier re-initialised for fine-tuning"
            if k in sd:
                report.unused[k] = f"classifier of shape {tuple(sd.pop(k).shape)}"
    problems = key_problems(sd, {k: v.shape for k, v in target.items()}, fresh=list(fresh))
    if problems:
        head_at_fault = any(k.startswith("head.") and (k not in sd or sd[k].shape != target[k].shape)
                            for k in target if k not in fresh)
        hint = " (pass reinit_head=True to fine-tune on other classes)" if head_at_fault else ""
        theirs, ours = swin_geometry(sd), swin_geometry(target)
        if theirs != ours:  # a checkpoint of another Swin size: say which one
            hint += f"; the checkpoint holds a Swin with {theirs}, the model is one with {ours}"
        raise CheckpointLoadError(f"cannot load {source} as {fmt!r} into {type(model).__name__}: "
                                  + " | ".join(problems) + hint)
    model.load_state_dict(sd, strict=False)
    report.loaded = sorted(sd)
    report.fresh = fresh
    if log is not None:
        report.log(log)
    return report
