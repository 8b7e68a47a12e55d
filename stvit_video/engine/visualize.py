"""What a checkpoint's model looks at in a video: semantic-token attention, token assignment, Grad-CAM.

One clip per video, seen exactly as the tester's 1-view headline sees it: the centre clip x
centre crop of the checkpoint's stored test transform (same dataset, decoder and
normalisation as :mod:`stvit_video.engine.predict`). Two forward passes per clip:

    1 no_grad, STGM layer-2 attention captured   logits (the prediction), one map per semantic
                                                   token (:func:`semantic_attention`)
    2 with gradients, nothing captured             Grad-CAM of one class on the last-stage features

Capture: :func:`semantic_attention` sets ``store_attention`` on the ``SemanticAttention`` of
every STGM layer-2 block (it keeps softmax(q k^T * scale), mean over heads, beside the unchanged
fused attention call) and a forward pre-hook on the STViT stage records the image-token map
size; nothing else runs differently, so the logits are the same with and without it (tested
with ``torch.equal``). Per unit, layer 2's keys are [S1 ; X]: the semantic tokens of layer 1
(not image positions: their share is kept as ``semantic_share`` and left out of the maps) and
the image tokens of the token's own slice (``perframe``) or of the whole clip
(``spatiotemporal``). Those image-token weights, scattered to their (D, H, W) positions, are a
token's map; each image token is assigned to the semantic token that gives it the largest weight.

Grad-CAM: ReLU(sum_c w_c A_c) with A = ``forward_features`` (the normalised last-stage map,
(C, T', H', W')) and w_c the mean gradient of the class logit over A's positions. For Swin and
STViT-R the positions are image tokens (T/2 x H/32 x W/32 for the Swin-T layout); plain STViT
ends on the semantic grid (the stage's (Tg, 3n, 3n) grid of pooled tokens, merged like an image
map in later stages): position (t, i, j) stands for the pooling region of its tokens, a regular
grid over the frame, and is drawn as one.

Pictures and JSON: :mod:`stvit_video.report.token_maps`. The test job's ``TEST.VISUALIZE N``
draws the N most confused test videos with :func:`visualize_most_confused`.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from stvit_video.config import get_cfg_defaults, with_values
from stvit_video.datasets import build_device_transform
from stvit_video.datasets.device_transforms import DeviceTransform
from stvit_video.datasets.kinetics import clip_dataset
from stvit_video.datasets.video_list import VideoList, VideoRecord, full_class_names
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine.job_setup import inference_device, video_files
from stvit_video.engine.model_setup import build_checkpoint_model
from stvit_video.engine.views import with_stored_transform
from stvit_video.models.stvit import STViTStage3D, semantic_geometry
from stvit_video.report.metrics import aggregate
from stvit_video.report.token_maps import (ANIMATION_FORMATS, ClassPick, ClipMaps, SemanticMaps, animation, grid_png,
                                           maps_json)
from stvit_video.utils.atomic import atomic_write_bytes, atomic_write_text
from stvit_video.utils.errors import ConfigError

__all__ = ["DEFAULT_TOKENS", "VisualizedVideo", "clip_maps", "grad_cam", "most_confused_videos", "resolve_class",
           "semantic_attention", "visualize_most_confused", "visualize_videos"]

logger = logging.getLogger(__name__)

DEFAULT_TOKENS = 4  # token columns in a picture when none are asked for
SEMANTIC_NOTE = ("STGM layer 2: each semantic token attends to the semantic tokens of layer 1 and to the image tokens "
                 "of its slice (perframe) or of the whole clip (spatiotemporal); the semantic-token keys are not image "
                 "positions and are left out of the maps (their weight is semantic_key_share)")


@dataclass
class _UnitCapture:
    """One STGM layer 2 being captured: its stage, its attention module and the stage's input size."""

    stage: STViTStage3D
    attn: nn.Module
    inputs: dict[str, tuple[int, ...]]
    unit: int


@contextlib.contextmanager
def semantic_attention(model: nn.Module) -> Iterator[list[_UnitCapture]]:
    """Within the block, forward passes of ``model`` keep every STGM layer-2 attention map.

    Yields the captures (one per unit, in order; empty for a model without semantic tokens);
    after a forward pass of one clip, :func:`_unit_maps` turns each into a
    :class:`SemanticMaps`. On exit the flags, the kept maps and the hooks are removed.
    """
    captures: list[_UnitCapture] = []
    handles = []
    for stage in (m for m in model.modules() if isinstance(m, STViTStage3D)):
        inputs: dict[str, tuple[int, ...]] = {}
        handles.append(stage.register_forward_pre_hook(
            lambda _module, args, inputs=inputs: inputs.__setitem__("x", tuple(args[0].shape))))
        layer2 = [stage.blocks[j].attn for j, role in enumerate(stage.roles) if role == "stgm2"]
        captures += [_UnitCapture(stage, attn, inputs, unit) for unit, attn in enumerate(layer2)]
    try:
        for c in captures:
            c.attn.store_attention = True
        yield captures
    finally:
        for handle in handles:
            handle.remove()
        for c in captures:
            c.attn.__dict__.pop("store_attention", None)  # back to the class default (off)
            c.attn.__dict__.pop("attention", None)


def _unit_maps(capture: _UnitCapture) -> SemanticMaps:
    """The captured layer-2 attention of one clip (batch 1) as per-token image maps."""
    stage = capture.stage
    B, D, H, W, _ = capture.inputs["x"]
    weights = capture.attn.attention
    assert B == 1 and weights is not None, "capture one clip per forward pass"
    geo = semantic_geometry((D, H, W), stage.window_size, stage.sample_window_size, stage.temporal_pool)
    Tg, Hg, Wg = geo.grid
    Q, K = Hg * Wg, Tg * Hg * Wg
    a = weights.float().cpu()
    if stage.per_slice:  # groups = slices: (Tg, Q, Q + H*W), Tg == D
        a = a.reshape(Tg, Q, Q + H * W)
        share = a[..., :Q].sum(-1).reshape(K)
        maps = torch.zeros(Tg, Q, D, H, W)
        for t in range(Tg):
            maps[t, :, t] = a[t, :, Q:].reshape(Q, H, W)
        maps = maps.reshape(K, D, H, W)
        visible = np.stack([np.repeat(np.arange(Tg), Q), np.repeat(np.arange(Tg), Q) + 1], 1)
    else:  # one group per clip: (1, K, K + D*H*W)
        a = a.reshape(K, K + D * H * W)
        share = a[:, :K].sum(-1)
        maps = a[:, K:].reshape(K, D, H, W)
        visible = np.tile([0, D], (K, 1))
    return SemanticMaps(unit=capture.unit, mode=stage.mode, image_tokens=(D, H, W), grid=(Tg, Hg, Wg),
                        attention=maps.numpy().astype(np.float32), visible=visible.astype(np.int64),
                        semantic_share=share.numpy().astype(np.float32),
                        assignment=maps.argmax(0).numpy().astype(np.int32))


def grad_cam(model: nn.Module, x: torch.Tensor, class_id: int) -> np.ndarray:
    """Grad-CAM of ``class_id`` on the last-stage features.

    Args:
        model: a :class:`~stvit_video.models.swin3d.SwinTransformer3D` (``forward_features`` /
            ``forward_head``), in eval mode.
        x: float32 (1, C, T, H, W), normalised.

    Returns:
        float32 (T', H', W') >= 0, the layout of ``forward_features`` (see the module docstring).
    """
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"grad_cam: expects one clip (1, C, T, H, W), got {tuple(x.shape)}")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)  # a graph even when the parameters are frozen
        features = model.forward_features(x)  # (1, C, T', H', W')
        logit = model.forward_head(features)[0, class_id]
        (grad,) = torch.autograd.grad(logit, features)
    weights = grad.mean(dim=(2, 3, 4), keepdim=True)  # (1, C, 1, 1, 1)
    cam = torch.relu((weights * features.detach()).sum(1))[0]
    return cam.float().cpu().numpy()


def clip_maps(model: nn.Module, frames: torch.Tensor, *, transform: DeviceTransform, class_names: Sequence[str],
              target: Optional[int] = None, video: str = "", arch: str = "") -> ClipMaps:
    """Every map of one clip.

    Args:
        model: the classifier, on its device (put in eval mode here, restored after).
        frames: uint8 (C, T, H, W), the clip as the loader gives it (not normalised).
        transform: the checkpoint's normalisation.
        class_names: one name per class id.
        target: the class Grad-CAM explains; None = the predicted one.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = transform(frames.unsqueeze(0).to(device), False)
        with torch.no_grad(), semantic_attention(model) as captures:
            logits = model(x)
            semantic = tuple(_unit_maps(c) for c in captures)
        probs = logits.float().softmax(-1)[0].cpu()
        predicted = int(probs.argmax())
        explained = predicted if target is None else int(target)
        cam = grad_cam(model, x, explained)
    finally:
        model.train(was_training)
    stvit = getattr(model, "stvit", None)
    on_grid = stvit is not None and not stvit.recovery
    notes = [SEMANTIC_NOTE] if semantic else [f"{arch or type(model).__name__} has no semantic tokens: Grad-CAM only"]
    if on_grid:
        notes.append("Grad-CAM positions lie on the semantic grid (plain STViT): each stands for the pooling region "
                     "of its tokens, drawn as a regular grid over the frame")

    def pick(c: int) -> ClassPick:
        return ClassPick(c, class_names[c], float(probs[c]))

    return ClipMaps(video=video, arch=arch, frames=frames.permute(1, 2, 3, 0).cpu().numpy(),
                    predicted=pick(predicted), explained=pick(explained), gradcam=cam,
                    gradcam_layout="semantic grid" if on_grid else "image tokens", semantic=semantic,
                    notes=tuple(notes))


def resolve_class(text: str, class_names: Sequence[str], source: str) -> int:
    """A class given by name (exact, else case-insensitive) or by id.

    Raises:
        ConfigError: no such class (the message lists the classes).
    """
    text = str(text).strip()
    if text in class_names:
        return list(class_names).index(text)
    if re.fullmatch(r"\d+", text):
        if int(text) < len(class_names):
            return int(text)
        raise ConfigError(f"visualize: class id {text}: {source} has {len(class_names)} classes "
                          f"(ids 0 to {len(class_names) - 1})")
    folded = [i for i, n in enumerate(class_names) if n.lower() == text.lower()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(class_names[:20]) + (f", ... ({len(class_names)} in all)" if len(class_names) > 20 else "")
    raise ConfigError(f"visualize: class {text!r} is not a class of {source}; its classes: {shown}")


@dataclass(frozen=True, eq=False)
class VisualizedVideo:
    """What was written for one video, or why nothing was.

    Attributes:
        path: the video.
        png, animation: the files written (None when the video could not be decoded).
        error: the decoder's reason, else None.
        maps: the maps drawn (None on error).
    """

    path: str
    png: Optional[Path] = None
    animation: Optional[Path] = None
    error: Optional[str] = None
    maps: Optional[ClipMaps] = None


def _one_view_dataset(cfg, records: list[VideoRecord], names: list[str], source: str):
    """The centre clip x centre crop of every record, as the tester's 1-view headline sees it."""
    return clip_dataset(cfg, "test", VideoList(records, names, source), views=(1, 1))


def _item_frames(dataset, index: int) -> tuple[Optional[torch.Tensor], Optional[str]]:
    """uint8 (C, T, H, W) of item ``index``, or the decoder's reason."""
    item = dataset[index]
    if item.failed:
        return None, dict(zip(item.bad_videos, item.bad_reasons)).get(item.video_index, "could not be decoded")
    return item.frames[0], None


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        seen[p.stem] = seen.get(p.stem, 0) + 1
        stems.append(p.stem if seen[p.stem] == 1 else f"{p.stem}_{seen[p.stem]}")
    return stems


def _write_pictures(maps: ClipMaps, base: Path, *, tokens: int, unit: int, fmt: str) -> tuple[Path, Path]:
    png, moving = base.with_suffix(".png"), base.with_suffix(f".{fmt}")
    atomic_write_bytes(png, grid_png(maps, tokens=tokens, unit=unit))
    atomic_write_bytes(moving, animation(maps, fmt, unit=unit))
    return png, moving


def visualize_videos(checkpoint: str | Path, videos: Sequence[str | Path], out_dir: str | Path, *,
                     target: Optional[str] = None, tokens: Optional[int] = None, json_path: Optional[str | Path] = None,
                     fmt: str = "gif", device: str = "auto", unit: int = -1) -> list[VisualizedVideo]:
    """Pictures of every video: ``OUT/<stem>.png`` (frames x maps) and ``OUT/<stem>.gif|.mp4``.

    Args:
        checkpoint: one of our checkpoints (it carries the model, classes and test transform).
        videos: video files.
        target: the class Grad-CAM explains, by name or id; None = each clip's predicted class.
        tokens: token columns per picture; None = :data:`DEFAULT_TOKENS` (0 without semantic tokens).
        json_path: also write every raw map here (:func:`~stvit_video.report.token_maps.maps_json`).
        fmt: "gif" or "mp4" for the animation.
        device: "auto" (CUDA when available), "cpu", "cuda", ...
        unit: the semantic-token unit drawn (default the last; the JSON holds all).

    Raises:
        DataError: a video file does not exist.
        CheckpointError: the checkpoint cannot be read.
        ConfigError: an unknown class, token columns asked of a model without semantic tokens,
            a bad format or count.
    """
    if fmt not in ANIMATION_FORMATS:
        raise ConfigError(f"visualize: format {fmt!r}: use one of {', '.join(ANIMATION_FORMATS)}")
    if tokens is not None and tokens < 0:
        raise ConfigError(f"visualize: {tokens} tokens: use 0 (none) or more")
    paths = video_files(videos, "visualize")
    loaded = ckpt.load_for_inference(checkpoint)
    arch = loaded.arch["name"]
    num_classes = int(loaded.arch["kwargs"]["num_classes"])
    names = full_class_names(loaded.class_names, num_classes)
    class_id = None if target is None else resolve_class(target, names, str(checkpoint))
    has_tokens = loaded.arch["kwargs"].get("stvit") is not None
    if tokens and not has_tokens:
        raise ConfigError(f"visualize: {checkpoint} holds {arch}, which has no semantic tokens, so there are no token "
                          f"maps to draw (tokens {tokens}); leave the token count out for Grad-CAM only")
    units = loaded.arch["kwargs"]["stvit"]["num_units"] if has_tokens else 0
    if has_tokens and not -units <= unit < units:
        raise ConfigError(f"visualize: unit {unit}: {arch} has {units} semantic-token unit(s) (0 to {units - 1}, "
                          "or -1 for the last)")
    if not has_tokens:
        logger.info("visualize: %s has no semantic tokens: Grad-CAM only", arch)
    tokens = (DEFAULT_TOKENS if has_tokens else 0) if tokens is None else tokens
    cfg = with_values(with_stored_transform(get_cfg_defaults(), loaded.test_transform),
                      {"MODEL.NUM_CLASSES": num_classes})
    dev = inference_device(device)
    model = build_checkpoint_model(loaded, "visualize").to(dev)
    dataset = _one_view_dataset(cfg, [VideoRecord(str(p.resolve()), 0) for p in paths], names, "visualize")
    transform = build_device_transform(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (path, stem) in enumerate(zip(paths, _unique_stems(paths))):
        frames, error = _item_frames(dataset, i)
        if frames is None:
            logger.error("visualize: %s could not be decoded: %s", path, error)
            results.append(VisualizedVideo(str(path), error=error))
            continue
        maps = clip_maps(model, frames, transform=transform, class_names=names, target=class_id, video=str(path),
                         arch=arch)
        png, moving = _write_pictures(maps, out / stem, tokens=tokens, unit=unit, fmt=fmt)
        results.append(VisualizedVideo(str(path), png, moving, None, maps))
    if json_path is not None:
        import simplejson

        document = {"checkpoint": str(checkpoint), "arch": arch,
                    "view": "the centre clip x centre crop of the checkpoint's test transform",
                    "videos": [maps_json(r.maps) if r.maps is not None else {"video": r.path, "error": r.error}
                               for r in results]}
        atomic_write_text(json_path, simplejson.dumps(document))
    return results


# ----------------------------------------------------------------------------------------- #
# The test job's TEST.VISUALIZE
# ----------------------------------------------------------------------------------------- #
def most_confused_videos(logits: np.ndarray, valid: np.ndarray, labels: Sequence[int], ensemble: str,
                         count: int) -> list[tuple[int, float]]:
    """The ``count`` most confused videos: (row, true-class score), most confused first.

    Most confused = the lowest score of the true class, the video's softmax scores combined over
    its valid views as the report combines them (mean for "sum", max for "max"); a video
    predicted wrongly with high confidence has a low true-class score, so it comes first. Ties:
    the higher top score (the more confident mistake) first, then the row. Videos without a
    decoded view are left out (there is nothing to draw).
    """
    scores, has_view = aggregate(logits, valid, ensemble)
    if ensemble == "sum":
        scores = scores / np.maximum(valid.sum(1, keepdims=True), 1)
    labels = np.asarray(labels)
    rows = np.flatnonzero(has_view)
    true = scores[rows, labels[rows]]
    order = np.lexsort((rows, -scores[rows].max(1), true))[:count]
    return [(int(rows[i]), float(true[i])) for i in order]


def visualize_most_confused(model: nn.Module, cfg: Any, *, records: Sequence[VideoRecord],
                            class_names: Sequence[str], logits: np.ndarray, valid: np.ndarray, ensemble: str,
                            out_dir: str | Path, count: int, arch: str = "",
                            folder: str = "visualize") -> list[dict[str, Any]]:
    """Pictures of the ``count`` most confused test videos (:func:`most_confused_videos`) in
    ``out_dir/folder``, one clip each (the centre clip x centre crop), Grad-CAM for the predicted
    class; returns one JSON-able entry per video for the report (paths relative to ``out_dir``).

    Args:
        cfg: the test config (with the checkpoint's transform), for the clip and normalisation.
        records: the test list's rows; logits (N, V, K) and valid (N, V) their views.
        arch: the model's name, for the pictures' titles.
    """
    chosen = most_confused_videos(logits, valid, [r.label for r in records], ensemble, count)
    if not chosen:
        return []
    names = list(class_names)
    dataset = _one_view_dataset(cfg, [records[row] for row, _ in chosen], names, "TEST.VISUALIZE")
    transform = build_device_transform(cfg)
    target_dir = Path(out_dir) / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (row, true_score) in enumerate(chosen):
        record = records[row]
        entry: dict[str, Any] = {"row": row, "path": record.path, "label": int(record.label),
                                 "true_name": names[record.label], "true_score": true_score}
        frames, error = _item_frames(dataset, i)
        if frames is None:
            entries.append({**entry, "error": error})
            continue
        maps = clip_maps(model, frames, transform=transform, class_names=names, video=record.path, arch=arch)
        stem = f"{i + 1:02d}_row{row}_{Path(record.path).stem}"
        png, moving = _write_pictures(maps, target_dir / stem, tokens=DEFAULT_TOKENS if maps.semantic else 0,
                                      unit=-1, fmt="gif")
        entries.append({**entry, "clip_predicted": maps.predicted.name, "clip_predicted_score": maps.predicted.score,
                        "png": f"{folder}/{png.name}", "animation": f"{folder}/{moving.name}"})
    logger.info("test: pictures of the %d most confused videos in %s (TEST.VISUALIZE)", len(entries), target_dir)
    return entries
