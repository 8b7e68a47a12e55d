"""Released 2D STViT-R ImageNet checkpoints -> our per-frame STViT-R video model.

Source: the official STViT-R code, https://github.com/changsn/STViT-R (``models/
swin_transformer.py``, ``models/layers.py``, ``models/multi_scale.py``); weights
``STViT-R-Swin-S.pth`` and ``STViT-R-Swin-B.pth`` (no Swin-T was released), saved by
``utils.py: save_checkpoint`` as ``{"model": state_dict, "optimizer": ..., ...}``. Both were
trained with ``USE_GLOBAL=False SHORTCUT=False RELATIVE_POS=False USE_CONV_POS=False``
(config dumps in ``log/small.txt`` and ``log/base.txt``).

Released layout, ``i`` = stage, ``j`` = block; stage 2 is their ``Deit`` class, whose units
start at blocks 0, 6, 12 (hard-coded) -> ours, where a unit keeps the block index::

    patch_embed.proj.{0,2}.c.weight            conv stem, 3x3 stride 2 (x2)   -> unused (see below)
    patch_embed.proj.{0,2}.bn.*                BatchNorm of the stem          -> unused
    layers.i.blocks.j.{norm1,norm2,mlp.fc1,mlp.fc2,attn.qkv,attn.proj}.*      -> same name
    layers.i.blocks.j.attn.relative_position_bias_table  (169, heads)        -> tiled to (15*169, heads)
    layers.i.blocks.j.attn.{relative_position_index,attn_mask}  buffers     -> unused (recomputed)
    layers.2.blocks.j (j % 6 == 0)   Swin window block, no shift            -> unit block 0
    layers.2.blocks.j (j % 6 == 1)   SemanticAttentionBlock (STGM layer 1)  -> SemanticBlock(residual=False)
    layers.2.blocks.j (j % 6 in 2..5) Block: STGM layer 2, local, global, recovery -> SemanticBlock
        {norm1,norm2,attn.q,attn.kv,attn.proj,mlp.fc1,mlp.fc2}.*, layer_scale_{1,2} -> same name
    layers.2.semantic_token2  (1, 36, C), only with USE_GLOBAL              -> layers.2.global_centres
    layers.i.downsample.{norm,reduction}.*, norm.*                          -> same name
    head.{weight,bias}  (1000 ImageNet classes)                             -> unused; head.fc.* fresh

The conv stem. The released image models replace Swin's 4x4 patch embedding by two 3x3
stride-2 convolutions, each followed by BatchNorm and Hardswish, and drop the LayerNorm after
it (``models/layers.py: PatchEmbed``). A non-linear two-layer stem has no exact counterpart
in our single 2x4x4 ``PatchEmbed3D``, so its 12 tensors are reported unused, ``patch_embed.*``
stays freshly initialised, and a warning says so: every pretrained stage was trained on the
stem's features, so the fresh embedding must be trained at the full learning rate (keep it
out of a backbone LR multiplier). A model whose embedding *is* a 3D conv stem with the
released key names (``patch_embed.proj.{0,2}.c.weight`` of rank 5, ``...bn.*``) gets the stem
inflated instead: a 2D kernel (O, I, kh, kw) becomes (O, I, kt, kh, kw), repeated over time
and divided by kt, like a plain 2D ``patch_embed.proj.weight``, so a temporally constant
clip gives the 2D features (BatchNorm tensors are copied).

Numerics match block for block (so nothing is rescaled): attention scale head_dim^-0.5 in
every block; LayerNorm eps 1e-5 everywhere (their ``Deit`` stage defaults to 1e-6 but is
always handed ``nn.LayerNorm``); STGM layer 1 without residual on its attention branch
(``SHORTCUT=False``); one norm for queries and keys; q / kv / proj with bias; layer scales
on both branches of every STViT block and none in Swin blocks; shifted-window mask -100;
global centres (when trained) added to the STGM layer-2 queries of the first unit only.

Everything else the released code can save but our model cannot represent (options off in
the released models) is an error naming the key and the option: ``USE_CONV_POS``
(``conv_pos.*``), ``RELATIVE_POS`` (a bias table in a semantic block), ``APE``
(``absolute_pos_embed``), layer scales in Swin blocks; so is a checkpoint whose units sit at
other block indices than the model's (build the model with the checkpoint's ``num_units``).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from stvit_video.models.conversion import (
    CheckpointLoadError,
    LoadReport,
    drop_derived,
    inflate_bias_table,
    key_problems,
)

__all__ = ["convert_stvit_r2d", "semantic_block_indices", "STEM_PATTERN"]

logger = logging.getLogger(__name__)

# The released conv stem: patch_embed.proj.<0|2>.<c|bn>.<tensor>
STEM_PATTERN = re.compile(r"^patch_embed\.proj\.\d+\.(c|bn)\.")
_SEMANTIC_Q = re.compile(r"^(layers\.\d+)\.blocks\.(\d+)\.attn\.q\.weight$")
_BLOCK = re.compile(r"^(layers\.\d+)\.blocks\.(\d+)\.")
_RELEASED_HEAD = ("head.weight", "head.bias")
_RELEASED_GLOBAL = "semantic_token2"
_OUR_GLOBAL = "global_centres"


def semantic_block_indices(keys: Sequence[str]) -> dict[str, list[int]]:
    """Blocks with separate q / kv projections (STViT blocks), per stage.

    Args:
        keys: state-dict keys (released or ours: both name them ``layers.i.blocks.j.attn.q.weight``).

    Returns:
        ``{"layers.i": sorted block indices}`` for every stage that has such blocks.
    """
    found: dict[str, list[int]] = {}
    for k in keys:
        m = _SEMANTIC_Q.match(k)
        if m:
            found.setdefault(m.group(1), []).append(int(m.group(2)))
    return {stage: sorted(idx) for stage, idx in sorted(found.items())}


def _describe_units(blocks: Mapping[str, list[int]]) -> str:
    if not blocks:
        return "no STViT blocks"
    parts = []
    for stage, idx in blocks.items():
        units = len(idx) / 5  # each unit has 5 STViT blocks (its block 0 is a Swin window block)
        parts.append(f"{stage}: blocks {idx} ({units:g} unit{'' if units == 1 else 's'})")
    return "; ".join(parts)


def _unsupported_reason(key: str, semantic: Mapping[str, list[int]]) -> Optional[str]:
    """Why a released key has no place in our model, for the options the released models left off."""
    if ".conv_pos." in key:
        return "trained with USE_CONV_POS=True; our STGM has no convolutional position encoding"
    if key.startswith("absolute_pos_embed"):
        return "trained with APE=True; our model has no absolute position embedding"
    m = _BLOCK.match(key)
    in_semantic_block = bool(m) and int(m.group(2)) in semantic.get(m.group(1), [])
    if in_semantic_block and key.endswith("relative_position_bias_table"):
        return "trained with RELATIVE_POS=True; our semantic blocks have no position bias"
    if m and not in_semantic_block and ".layer_scale_" in key:
        return "a Swin block with layer scale (USE_LAYER_SCALE reached it); our Swin blocks have none"
    return None


def _inflate_conv(key: str, weight: torch.Tensor, target: torch.Size) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, I, kt, kh, kw): repeated over time, divided by kt (static clips keep
    their 2D response)."""
    kt = target[2]
    out = weight.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
    if out.shape != target:
        raise CheckpointLoadError(f"{key}: 2D kernel {tuple(weight.shape)} does not inflate to the model's "
                                  f"{tuple(target)}")
    return out


def _resize_global_centres(key: str, centres: torch.Tensor, target: torch.Size) -> torch.Tensor:
    """(1, n*n, C) released grid -> (1, m*m, C) model grid, bilinearly, as the model itself resizes
    its centres for another crop (``STViTStage3D._global_centres``)."""
    (_, n_src, C), (_, n_tgt, C_tgt) = centres.shape, target
    side_src, side_tgt = math.isqrt(n_src), math.isqrt(n_tgt)
    if C != C_tgt or side_src ** 2 != n_src or side_tgt ** 2 != n_tgt:
        raise CheckpointLoadError(f"{key}: global centres {tuple(centres.shape)} do not fit the model's "
                                  f"{tuple(target)} (need square grids and equal channels)")
    grid = centres.transpose(1, 2).reshape(1, C, side_src, side_src)
    grid = F.interpolate(grid, size=(side_tgt, side_tgt), mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


def convert_stvit_r2d(sd: Mapping[str, torch.Tensor], target_shapes: Mapping[str, torch.Size], *,
                      window_size: Sequence[int], report: Optional[LoadReport] = None,
                      log: Optional[logging.Logger] = logger) -> dict[str, torch.Tensor]:
    """Inflate a released 2D STViT-R state dict into our per-frame STViT-R model, every key accounted for.

    Depends only on the model's keys and shapes, not on how its classes are built.

    Args:
        sd: the released state dict (the ``"model"`` entry of their checkpoint, see
            :func:`stvit_video.models.conversion.unwrap_state_dict`).
        target_shapes: the model's ``{key: shape}`` (``{k: v.shape for k, v in
            model.state_dict().items()}``).
        window_size: the model's 3D window (wd, wh, ww); 2D bias tables are resized to
            (2wh-1) x (2ww-1) if needed and tiled over the 2wd-1 temporal offsets.
        report: filled with ``loaded`` (model keys produced), ``fresh`` (model keys left at
            their initialisation, with the reason) and ``unused`` (checkpoint keys dropped,
            with the reason).
        log: where the conv-stem warning goes (None = silent).

    Returns:
        ``{model key: tensor}`` covering every model key except those in ``report.fresh``;
        ``model.load_state_dict(out, strict=False)`` then reports exactly those as missing.

    Raises:
        CheckpointLoadError: units at other block indices than the model's, keys the model has
            no place for (with the released option that produced them), model keys the
            checkpoint lacks, and shape mismatches, all by name.
    """
    report = LoadReport() if report is None else report
    src_units, tgt_units = semantic_block_indices(list(sd)), semantic_block_indices(list(target_shapes))
    if src_units != tgt_units:
        raise CheckpointLoadError(
            f"STViT-R 2D checkpoint: its STViT blocks ({_describe_units(src_units)}) are not where the model's "
            f"are ({_describe_units(tgt_units)}); build the model with the checkpoint's number of units "
            "(released Swin-S/B: num_units=3, stage 2)")

    out: dict[str, torch.Tensor] = {}
    unsupported: dict[str, str] = {}
    stem_dropped = []
    for k, v in drop_derived(dict(sd), report).items():
        reason = _unsupported_reason(k, src_units)
        target = target_shapes.get(k)
        if reason is not None:
            unsupported[k] = reason
        elif STEM_PATTERN.match(k) and target is None:
            stem_dropped.append(k)
            report.unused[k] = "released conv stem (2 x conv3x3-BN-Hardswish): no counterpart in PatchEmbed3D"
        elif k in _RELEASED_HEAD:
            report.unused[k] = f"2D ImageNet classifier of shape {tuple(v.shape)}"
        elif k.endswith(_RELEASED_GLOBAL):
            ours = k[: -len(_RELEASED_GLOBAL)] + _OUR_GLOBAL
            if ours not in target_shapes:
                unsupported[k] = "trained with USE_GLOBAL=True; build the model with use_global=True"
            else:
                out[ours] = v if v.shape == target_shapes[ours] else _resize_global_centres(k, v, target_shapes[ours])
        elif k.endswith("relative_position_bias_table") and target is not None:
            out[k] = inflate_bias_table(k, v, target[0], window_size)
        elif target is not None and v.ndim == 4 and len(target) == 5:
            out[k] = _inflate_conv(k, v, target)
        else:
            out[k] = v

    fresh: dict[str, str] = {}
    for k in target_shapes:
        if k in out:
            continue
        if k.startswith("patch_embed.") and stem_dropped:
            fresh[k] = "the released model has a conv stem instead of a patch embedding"
        elif k.endswith(_OUR_GLOBAL):
            fresh[k] = "checkpoint trained without global centres (USE_GLOBAL=False, as both released models)"
        elif k.startswith("head."):
            fresh[k] = "video classifier: the ImageNet head does not transfer"
    problems = []
    if unsupported:
        problems.append("no place in the model: " + "; ".join(f"{k} ({why})" for k, why in unsupported.items()))
    problems += key_problems(out, target_shapes, fresh=list(fresh))
    if problems:
        raise CheckpointLoadError("cannot convert the STViT-R 2D checkpoint: " + " | ".join(problems))

    if stem_dropped and log is not None:
        log.warning("STViT-R 2D checkpoint: its conv stem (%s) cannot be inflated into PatchEmbed3D, so %s "
                    "stay freshly initialised; the pretrained stages expect the stem's features: train the "
                    "patch embedding at the full learning rate", ", ".join(stem_dropped),
                    ", ".join(k for k in fresh if k.startswith("patch_embed.")))
    report.loaded = sorted(out)
    report.fresh.update(fresh)
    return out
