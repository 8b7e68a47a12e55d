"""Multi-view testing (``TEST.ENABLE True``): every view of every test video, gathered exactly
across ranks, aggregated per video, saved, and turned into the evaluation report.

    views      TEST.NUM_ENSEMBLE_VIEWS clips x TEST.NUM_SPATIAL_CROPS crops per video; each clip
               is decoded once and cut into its crops (stvit_video.datasets)
    sharding   the ShardSampler gives rank r the items r, r + R, ...: no padding, so across
               ranks every (video, view) pair is evaluated exactly once; rank 0 gathers the
               per-view logits and checks that each pair arrived once
    weights    TEST.CHECKPOINT_FILE_PATH, else (after training in the same run, or in an
               OUTPUT_DIR with checkpoints) best.pyth, else last.pyth; a random model only
               with TEST.ALLOW_RANDOM_INIT True
    output     OUTPUT_DIR/eval/: results.npz (per-view logits; rebuild the report with
               ``python -m stvit_video.report``), report.json, report.html, PNGs

Our own checkpoints carry the model, the class names and the test transform: the stored
transform wins over the config (with a warning naming every difference), so a checkpoint is
tested as it was trained. Foreign checkpoints (TEST.CHECKPOINT_TYPE video_swin / swin2d /
stvit_r2d) are read with the config's model and transform.
"""
from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from stvit_video import __version__
from stvit_video.datasets import build_dataset, construct_loader
from stvit_video.datasets.device_transforms import build_device_transform
from stvit_video.datasets.video_list import full_class_names
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.distributed import DistContext
from stvit_video.engine.model_setup import build_checkpoint_model
from stvit_video.engine.training import amp_dtype, checkpoint_dir
from stvit_video.models import build_model, model_arch
from stvit_video.models.weights import load_pretrained
from stvit_video.report import TestResults, build_report, headline_metrics, summary_text
from stvit_video.report.compare import comparison_rows
from stvit_video.utils.errors import CheckpointError, DataError
from stvit_video.utils.flops import count_flops, count_parameters

__all__ = ["ENSEMBLE_METHODS", "FAILED_VIEW_POLICIES", "ViewLogits", "run_views", "select_checkpoint", "test"]

logger = logging.getLogger(__name__)

# TEST.ENSEMBLE_METHOD and TEST.FAILED_VIEW_POLICY choices
ENSEMBLE_METHODS = ("sum", "max")
FAILED_VIEW_POLICIES = ("skip", "error")
# config keys the stored test transform of a checkpoint sets
_TRANSFORM_KEYS = {"mean": "DATA.MEAN", "std": "DATA.STD", "crop": "DATA.TEST_CROP_SIZE",
                   "num_frames": "DATA.NUM_FRAMES", "sampling_rate": "DATA.SAMPLING_RATE",
                   "target_fps": "DATA.TARGET_FPS"}


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


def select_checkpoint(cfg: CfgNode) -> Optional[Path]:
    """The weights to test: TEST.CHECKPOINT_FILE_PATH, else best.pyth, else last.pyth of
    OUTPUT_DIR/checkpoints; None when there are none."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return Path(cfg.TEST.CHECKPOINT_FILE_PATH)
    folder = checkpoint_dir(cfg)
    for name in ("best.pyth", "last.pyth"):
        if (folder / name).is_file():
            return folder / name
    return None


def _like(now: Any, value: Any) -> Any:
    """``value`` in the type of the config's current value (yacs refuses a float for an int key)."""
    if isinstance(now, (list, tuple)):
        return [_like(n, v) for n, v in zip(list(now) + [now[-1]] * len(value), value)] if now else list(value)
    if isinstance(now, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def stored_transform_keys(cfg: CfgNode, stored: dict[str, Any]) -> dict[str, Any]:
    """Config key (``DATA.MEAN``, ...) -> the checkpoint's test-transform value, typed like ``cfg``'s."""
    values = {}
    for field, key in _TRANSFORM_KEYS.items():
        group, name = key.split(".")
        values[key] = _like(getattr(getattr(cfg, group), name), stored[field])
    return values


def _with_stored_transform(cfg: CfgNode, stored: dict[str, Any], source: Path) -> CfgNode:
    """``cfg`` with the checkpoint's test transform; warns about every key that differs."""
    changes: dict[str, Any] = {}
    for key, value in stored_transform_keys(cfg, stored).items():
        group, name = key.split(".")
        now = getattr(getattr(cfg, group), name)
        if (list(now) if isinstance(now, (list, tuple)) else now) != value:
            changes[key] = value
            logger.warning("test: %s = %s in the config, but %s was trained with %s; testing with the checkpoint's "
                           "value", key, now, source, value)
    if not changes:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    for key, value in changes.items():
        group, name = key.split(".")
        setattr(getattr(cfg, group), name, value)
    cfg.freeze()
    return cfg


def _load_model(cfg: CfgNode, path: Optional[Path]) -> tuple[nn.Module, CfgNode, dict[str, Any]]:
    """The model to test, the config to test it with, and the checkpoint's provenance."""
    if path is None:
        if not cfg.TEST.ALLOW_RANDOM_INIT:
            raise CheckpointError(
                "test: no checkpoint to test (TEST.CHECKPOINT_FILE_PATH is empty and "
                f"{checkpoint_dir(cfg)} has no best.pyth or last.pyth); refusing to report the accuracy of a "
                "randomly initialised model. Set TEST.CHECKPOINT_FILE_PATH, or TEST.ALLOW_RANDOM_INIT True")
        logger.warning("test: testing a RANDOMLY INITIALISED model (TEST.ALLOW_RANDOM_INIT True)")
        return build_model(cfg), cfg, {"path": None, "sha256": None, "epoch": None, "random_init": True,
                                       "arch": cfg.MODEL.ARCH}
    if cfg.TEST.CHECKPOINT_TYPE != "native":
        model = build_model(cfg)
        load_pretrained(model, path, fmt=cfg.TEST.CHECKPOINT_TYPE, reinit_head=False, log=logger)
        return model, cfg, {"path": str(path), "sha256": ckpt.file_sha256(path), "epoch": None,
                            "format": cfg.TEST.CHECKPOINT_TYPE, "arch": cfg.MODEL.ARCH}
    loaded = ckpt.load_for_inference(path)
    wanted = model_arch(cfg)
    differences = [f"{k} {wanted['kwargs'].get(k)!r} vs {v!r}" for k, v in loaded.arch["kwargs"].items()
                   if wanted["kwargs"].get(k) != v and k != "num_classes"]
    if loaded.arch["name"] != wanted["name"] or differences:
        logger.warning("test: the config asks for %s%s, %s holds %s; testing the checkpoint's model",
                       wanted["name"], f" ({', '.join(differences)}: config vs checkpoint)" if differences else "",
                       path, loaded.arch["name"])
    model = build_checkpoint_model(loaded, "test")
    cfg = _with_stored_transform(cfg, loaded.test_transform, path)
    num_classes = loaded.arch["kwargs"].get("num_classes")
    if num_classes != cfg.MODEL.NUM_CLASSES:
        logger.warning("test: %s has %s classes, MODEL.NUM_CLASSES is %d; using the checkpoint's", path,
                       num_classes, cfg.MODEL.NUM_CLASSES)
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.NUM_CLASSES = num_classes
        cfg.freeze()
    return model, cfg, {"path": str(path), "sha256": loaded.sha256, "epoch": loaded.epoch,
                        "class_names": loaded.class_names, "arch": loaded.arch["name"]}


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
    autocast = torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), autocast:
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


def _software() -> dict[str, str]:
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "stvit_video": __version__}


def _cost(model: nn.Module, cfg: CfgNode) -> dict[str, Any]:
    side = cfg.DATA.TEST_CROP_SIZE
    view = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM, cfg.DATA.NUM_FRAMES, side, side)
    gflops = count_flops(model, view).total / 1e9
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    return {"params_m": count_parameters(model) / 1e6, "gflops_per_view": gflops, "gflops_per_video": gflops * views,
            "input": f"{cfg.DATA.NUM_FRAMES}x{side}x{side}"}


def test(cfg: CfgNode, ctx: DistContext, on_ready: Optional[Callable[[], None]] = None) -> dict[str, Any]:
    """Multi-view test on every rank; rank 0 writes OUTPUT_DIR/eval and returns the headline numbers.

    Raises:
        CheckpointError: no checkpoint (and TEST.ALLOW_RANDOM_INIT False), or one that does not load.
        DataError: failed views with TEST.FAILED_VIEW_POLICY error, or an unusable test list.
    """
    path = select_checkpoint(cfg)
    model, cfg, provenance = _load_model(cfg, path)
    dataset = build_dataset(cfg, "test")
    loader = construct_loader(cfg, "test", dataset=dataset, num_replicas=ctx.world_size, rank=ctx.rank)
    class_names = full_class_names(dataset.class_names or provenance.pop("class_names", None),
                                   cfg.MODEL.NUM_CLASSES)
    provenance.pop("class_names", None)
    if on_ready is not None:
        on_ready()
    device = ctx.device
    model = model.to(device)
    if cfg.MODEL.COMPILE:
        model = torch.compile(model)
    amp = amp_dtype(cfg, device)
    device_transform = build_device_transform(cfg)
    views = dataset.views_per_video
    logger.info("testing %s on %d videos x %d views (%d clips x %d crops), %d process(es)",
                provenance["path"] or "a random model", len(dataset.videos), views, cfg.TEST.NUM_ENSEMBLE_VIEWS,
                cfg.TEST.NUM_SPATIAL_CROPS, ctx.world_size)
    run = dict(device=device, device_transform=device_transform, amp=amp,
               max_views_per_batch=cfg.TEST.MAX_VIEWS_PER_BATCH, num_classes=cfg.MODEL.NUM_CLASSES)
    start = time.perf_counter()
    mine = run_views(model, loader, **run)
    wall = time.perf_counter() - start
    parts = dist_utils.all_gather_object(mine)
    shuffled_parts = None
    if cfg.TEST.TEMPORAL_SHUFFLE_CHECK:
        permutation = torch.randperm(cfg.DATA.NUM_FRAMES, generator=torch.Generator().manual_seed(cfg.RNG_SEED))
        shuffled_parts = dist_utils.all_gather_object(run_views(model, loader, frame_permutation=permutation, **run))
    if not ctx.is_main:
        return {}
    logits, valid = assemble_views(parts, len(dataset.videos), views, cfg.MODEL.NUM_CLASSES)
    failures = {k: v for p in parts for k, v in p.failures.items()}
    if failures and cfg.TEST.FAILED_VIEW_POLICY == "error":
        first = sorted(failures)[:5]
        raise DataError(f"test: {len(failures)} videos have views that failed to decode (TEST.FAILED_VIEW_POLICY "
                        f"error), e.g. " + "; ".join(f"{dataset.videos[i].path}: {failures[i]}" for i in first))
    labels = np.array([v.label for v in dataset.videos], dtype=np.int64)
    paths = [v.path for v in dataset.videos]
    bare = ckpt.unwrap_model(model)
    cfg_text = cfg.dump()
    meta: dict[str, Any] = {
        "model": {"arch": provenance.pop("arch"), **_cost(bare, cfg)},
        "cost": {"wall_time_s": wall, "videos_per_s": len(dataset.videos) / wall, "views_per_s": logits.shape[0] *
                 views / wall, "device": str(device), "processes": ctx.world_size,
                 "global_batch": cfg.TEST.BATCH_SIZE},
        "checkpoint": provenance,
        "config": {"name": cfg.OUTPUT_DIR, "sha256": hashlib.sha256(cfg_text.encode()).hexdigest()},
        "data": {"list": dataset.source, "videos_listed": len(dataset.videos),
                 "videos_present": sum(Path(p).is_file() for p in paths), "decoder": cfg.DATA.DECODING_BACKEND,
                 "short_side": _data_short_side(cfg), "crop": cfg.DATA.TEST_CROP_SIZE},
        "software": _software(),
    }
    if cfg.TEST.COMPARE_WITH:
        others, skipped = comparison_rows(cfg.TEST.COMPARE_WITH, meta["model"].get("gflops_per_view"))
        for reason in skipped:
            logger.warning("TEST.COMPARE_WITH: %s; not in this report", reason)
        if others:
            meta["extra_results"] = others
    results = TestResults(logits=logits, valid=valid, labels=labels, paths=paths, class_names=list(class_names),
                          num_clips=cfg.TEST.NUM_ENSEMBLE_VIEWS, num_crops=cfg.TEST.NUM_SPATIAL_CROPS,
                          ensemble=cfg.TEST.ENSEMBLE_METHOD, failures=failures, meta=meta)
    if shuffled_parts is not None:
        s_logits, s_valid = assemble_views(shuffled_parts, len(dataset.videos), views, cfg.MODEL.NUM_CLASSES)
        shuffled = TestResults(logits=s_logits, valid=s_valid, labels=labels, paths=paths,
                               class_names=list(class_names), num_clips=results.num_clips,
                               num_crops=results.num_crops, ensemble=results.ensemble)
        top1 = headline_metrics(shuffled)["top1"]
        meta["extra_results"] = {"temporally shuffled clips": {
            "top1": top1, "note": f"the same views with their {cfg.DATA.NUM_FRAMES} frames in a fixed random order; "
                                  f"{headline_metrics(results)['top1'] - top1:.1f} points below the ordered clips "
                                  "shows how much the model relies on motion"}, **meta.get("extra_results", {})}
        results = TestResults(**{**results.__dict__, "meta": meta})
    out = Path(cfg.OUTPUT_DIR) / "eval"
    save_path = Path(cfg.TEST.SAVE_RESULTS_PATH) if cfg.TEST.SAVE_RESULTS_PATH else out / "results.npz"
    results.save(save_path)
    report = build_report(results, out)
    logger.info("%s", summary_text(report, out))
    logger.info("per-view logits saved to %s", save_path)
    return {**headline_metrics(results), "report": str(out / "report.html"), "results": str(save_path),
            "extra_results": meta.get("extra_results", {})}


def _data_short_side(cfg: CfgNode) -> Optional[int]:
    """The short side data_prep resized the videos to (its ``encoding.json`` next to the lists)."""
    info = Path(cfg.DATA.PATH_TO_DATA_DIR) / "encoding.json"
    if not info.is_file():
        return None
    import json

    try:
        return int(json.loads(info.read_text(encoding="utf-8")).get("short_side"))
    except (ValueError, TypeError, OSError):
        return None
