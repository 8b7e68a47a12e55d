"""Multi-view testing (``TEST.ENABLE True``): every view of every test video, gathered exactly
across ranks, aggregated per video, saved, and turned into the evaluation report.

    list       TEST.SPLIT: test.csv, or val.csv as the official Kinetics protocol reports; the
               report names the split and the list's SHA-256, and says so when the tested
               best.pyth was selected by validation on that same list
    views      TEST.NUM_ENSEMBLE_VIEWS clips x TEST.NUM_SPATIAL_CROPS crops per video; clip k of
               K is centred in the k-th of K equal segments (mmaction's test mode); each clip is
               decoded once and cut into its crops (stvit_video.datasets). For even K the
               centre clip x centre crop (the 1-view headline) is none of them and is
               evaluated in one more pass
    sharding   the ShardSampler gives rank r the items r, r + R, ...: no padding, so across
               ranks every (video, view) pair is evaluated exactly once; rank 0 gathers the
               per-view logits and checks that each pair arrived once
    weights    TEST.CHECKPOINT_FILE_PATH, else (after training in the same run, or in an
               OUTPUT_DIR with checkpoints) best.pyth then last.pyth, or last.pyth with
               TEST.CHECKPOINT_SELECTION last (the Kinetics configs, as the official recipe);
               a random model only with TEST.ALLOW_RANDOM_INIT True
    classes    a checkpoint's class names must be in the order of the list's classnames.txt
               (an error names the first mismatch; TEST.REORDER_CLASSES maps them by name)
    output     OUTPUT_DIR/eval/: results.npz (per-view logits, saved before anything else is
               computed; rebuild the report with ``python -m stvit_video.report``),
               report.json, report.html, PNGs

Our own checkpoints carry the model, the class names and the test transform: the stored
transform wins over the config (with a warning naming every difference), so a checkpoint is
tested as it was trained. Foreign checkpoints (TEST.CHECKPOINT_TYPE video_swin / swin2d /
stvit_r2d) are read with the config's model and transform.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import platform
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from stvit_video import __version__
from stvit_video.config.access import with_values
from stvit_video.datasets import build_dataset, construct_loader
from stvit_video.datasets.device_transforms import build_device_transform
from stvit_video.datasets.kinetics import VideoClipDataset
from stvit_video.datasets.video_list import full_class_names, records_digest
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.distributed import DistContext
from stvit_video.engine.job_setup import amp_dtype, checkpoint_dir
from stvit_video.engine.model_setup import build_checkpoint_model, build_initialised_model
from stvit_video.engine.views import assemble_views, run_views, with_stored_transform
from stvit_video.models import build_model, model_arch
from stvit_video.models.weights import load_pretrained
from stvit_video.report import EvalResults, build_report, headline_metrics, summary_text
from stvit_video.report.compare import comparison_rows
from stvit_video.utils.encoding_info import encoded_short_side
from stvit_video.utils.errors import CheckpointError, DataError
from stvit_video.utils.flops import count_flops, count_parameters
from stvit_video.utils.view_grid import views_per_video

__all__ = ["CHECKPOINT_SELECTIONS", "FAILED_VIEW_POLICIES", "TEST_SPLITS", "select_checkpoint", "test"]

logger = logging.getLogger(__name__)

# TEST.FAILED_VIEW_POLICY, TEST.CHECKPOINT_SELECTION and TEST.SPLIT choices
FAILED_VIEW_POLICIES = ("skip", "error")
CHECKPOINT_SELECTIONS = ("best", "last")
TEST_SPLITS = ("test", "val")


class Gathered(NamedTuple):
    """One pass over the test views, gathered on rank 0: (N, V, K) logits, (N, V) valid, reasons."""

    logits: np.ndarray
    valid: np.ndarray
    failures: dict[int, str]


class Passes(NamedTuple):
    """The test's passes on rank 0 (None on the other ranks, and for passes not made)."""

    grid: Optional[Gathered]
    centre: Optional[Gathered]
    shuffled: Optional[Gathered]
    wall_s: float


def test(cfg: CfgNode, ctx: DistContext, on_ready: Optional[Callable[[], None]] = None) -> dict[str, Any]:
    """Multi-view test on every rank; rank 0 writes OUTPUT_DIR/eval and returns the headline numbers.

    Raises:
        CheckpointError: no checkpoint (and TEST.ALLOW_RANDOM_INIT False), or one that does not load.
        DataError: failed views with TEST.FAILED_VIEW_POLICY error, an unusable test list, or a
            class order that differs from the checkpoint's.
    """
    path = select_checkpoint(cfg)
    model, cfg, provenance = _load_model(cfg, path)
    dataset = build_dataset(cfg, "test")
    saved_names = provenance.pop("class_names", None)
    order = _class_order(saved_names, dataset.class_names, dataset.source, provenance["path"],
                         cfg.TEST.REORDER_CLASSES)
    class_names = full_class_names(dataset.class_names or saved_names, cfg.MODEL.NUM_CLASSES)
    if on_ready is not None:
        on_ready()
    bare = model.to(ctx.device)
    model = torch.compile(bare) if cfg.MODEL.COMPILE else bare
    logger.info("testing %s on %d videos of the %s list x %d views (%d clips x %d crops), %d process(es)",
                provenance["path"] or "a random model", len(dataset.videos), cfg.TEST.SPLIT, dataset.views_per_video,
                cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, ctx.world_size)
    passes = _run_passes(cfg, ctx, model, dataset, order)
    if not ctx.is_main:
        return {}
    _check_failures(cfg, dataset, passes.grid)
    with dist_utils.main_rank_work("writing the evaluation report", cfg.DIST.TIMEOUT_S):
        return _write_results(cfg, ctx, dataset, bare, path, provenance, class_names, passes)


def _run_passes(cfg: CfgNode, ctx: DistContext, model: nn.Module, dataset: VideoClipDataset,
                order: Optional[np.ndarray]) -> Passes:
    """The grid of views; the centre clip x centre crop when it is none of them (an even number of
    segment centres); the views with shuffled frames (TEST.TEMPORAL_SHUFFLE_CHECK). Every rank runs
    its shard of each pass."""
    run = dict(device=ctx.device, device_transform=build_device_transform(cfg), amp=amp_dtype(cfg, ctx.device),
               max_views_per_batch=cfg.TEST.MAX_VIEWS_PER_BATCH, num_classes=cfg.MODEL.NUM_CLASSES)

    def gather(views: tuple[int, int], permutation: Optional[torch.Tensor] = None) -> Optional[Gathered]:
        data = dataset if views == (dataset.num_clips, dataset.num_crops) else build_dataset(cfg, "test", views=views)
        loader = construct_loader(cfg, "test", dataset=data, num_replicas=ctx.world_size, rank=ctx.rank)
        mine = run_views(model, loader, frame_permutation=permutation, **run)
        if order is not None:
            mine.logits = mine.logits[:, order]
        parts = dist_utils.all_gather_object(mine)
        if not ctx.is_main:
            return None
        logits, valid = assemble_views(parts, len(dataset.videos), data.views_per_video, cfg.MODEL.NUM_CLASSES)
        return Gathered(logits, valid, {k: v for p in parts for k, v in p.failures.items()})

    grid_views = (dataset.num_clips, dataset.num_crops)
    start = time.perf_counter()
    grid = gather(grid_views)
    wall = time.perf_counter() - start
    centre = gather((1, 1)) if dataset.num_clips % 2 == 0 else None
    shuffled = None
    if cfg.TEST.TEMPORAL_SHUFFLE_CHECK:
        permutation = torch.randperm(cfg.DATA.NUM_FRAMES, generator=torch.Generator().manual_seed(cfg.RNG_SEED))
        shuffled = gather(grid_views, permutation)
    return Passes(grid, centre, shuffled, wall)


def _check_failures(cfg: CfgNode, dataset: VideoClipDataset, grid: Gathered) -> None:
    if grid.failures and cfg.TEST.FAILED_VIEW_POLICY == "error":
        first = sorted(grid.failures)[:5]
        raise DataError(f"test: {len(grid.failures)} videos have views that failed to decode (TEST.FAILED_VIEW_POLICY "
                        f"error), e.g. " + "; ".join(f"{dataset.videos[i].path}: {grid.failures[i]}" for i in first))


def _write_results(cfg: CfgNode, ctx: DistContext, dataset: VideoClipDataset, bare: nn.Module,
                   path: Optional[Path], provenance: dict[str, Any], class_names: list[str],
                   passes: Passes) -> dict[str, Any]:
    """Rank 0: save the per-view logits at once (nothing computed later can lose them), then add
    the model's cost, the extra results and the report."""
    grid, centre = passes.grid, passes.centre
    digest = records_digest(dataset.videos)
    _selected_on(provenance, path, digest)
    provenance.pop("val_list_sha256", None)
    meta = _provenance(cfg, ctx, dataset, provenance, digest, passes.wall_s)
    results = EvalResults(logits=grid.logits, valid=grid.valid, labels=[v.label for v in dataset.videos],
                          paths=[v.path for v in dataset.videos], class_names=list(class_names),
                          num_clips=cfg.TEST.NUM_ENSEMBLE_VIEWS, num_crops=cfg.TEST.NUM_SPATIAL_CROPS,
                          ensemble=cfg.TEST.ENSEMBLE_METHOD, failures=grid.failures, meta=meta,
                          centre_logits=None if centre is None else centre.logits[:, 0],
                          centre_valid=None if centre is None else centre.valid[:, 0])
    out = Path(cfg.OUTPUT_DIR) / "eval"
    save_path = Path(cfg.TEST.SAVE_RESULTS_PATH) if cfg.TEST.SAVE_RESULTS_PATH else out / "results.npz"
    results.save(save_path)
    meta["model"].update(_cost(bare, cfg))
    extra = _extra_results(cfg, results, passes.shuffled, meta["model"].get("gflops_per_view"))
    if extra:
        meta["extra_results"] = extra
    if cfg.TEST.VISUALIZE:
        meta["visualized"] = _visualize(cfg, bare, dataset, results, out)
    results = dataclasses.replace(results, meta=meta)
    results.save(save_path)
    report = build_report(results, out)
    logger.info("%s", summary_text(report, out))
    logger.info("per-view logits saved to %s", save_path)
    return {**headline_metrics(results), "report": str(out / "report.html"), "results": str(save_path),
            "extra_results": meta.get("extra_results", {})}


def _visualize(cfg: CfgNode, model: nn.Module, dataset: VideoClipDataset, results: EvalResults,
               out: Path) -> dict[str, Any]:
    """Pictures of the TEST.VISUALIZE most confused videos in ``out/visualize`` for the report
    (:func:`stvit_video.engine.visualize.visualize_most_confused`); pictures that cannot be drawn
    are a warning and a note in the report, never lost results."""
    from stvit_video.engine.visualize import visualize_most_confused

    rule = ("the videos with the lowest true-class score (softmax combined over their views as in the headline); "
            "one clip each: the centre clip x centre crop, Grad-CAM for the class that clip predicts")
    try:
        videos = visualize_most_confused(
            model, cfg, records=list(dataset.videos),
            class_names=results.class_names, logits=results.logits, valid=results.valid, ensemble=results.ensemble,
            out_dir=out, count=cfg.TEST.VISUALIZE, arch=str(results.meta["model"].get("arch", "")))
    except Exception as e:  # noqa: BLE001 - pictures must not cost the report
        logger.warning("test: the pictures of TEST.VISUALIZE could not be drawn (%s: %s); the report goes without them",
                       type(e).__name__, e)
        return {"rule": rule, "videos": [], "error": f"{type(e).__name__}: {e}"}
    return {"rule": rule, "videos": videos}


def _provenance(cfg: CfgNode, ctx: DistContext, dataset: VideoClipDataset, checkpoint: dict[str, Any], digest: str,
                wall: float) -> dict[str, Any]:
    """The report's ``meta``: what was tested on which data, how fast, with which software."""
    paths = [v.path for v in dataset.videos]
    views = dataset.views_per_video
    frames = "raw frame" if not cfg.DATA.TARGET_FPS else f"frame at {cfg.DATA.TARGET_FPS:g} fps"
    return {
        "model": {"arch": checkpoint.pop("arch")},
        "cost": {"wall_time_s": wall, "videos_per_s": len(paths) / wall, "views_per_s": len(paths) * views / wall,
                 "device": str(ctx.device), "processes": ctx.world_size, "global_batch": cfg.TEST.BATCH_SIZE},
        "checkpoint": checkpoint,
        "config": {"name": cfg.OUTPUT_DIR, "sha256": hashlib.sha256(cfg.dump().encode()).hexdigest()},
        "data": {"split": cfg.TEST.SPLIT, "list": dataset.source, "list_sha256": digest, "videos_listed": len(paths),
                 "videos_present": sum(Path(p).is_file() for p in paths), "decoder": cfg.DATA.DECODING_BACKEND,
                 "short_side": encoded_short_side(cfg.DATA.PATH_TO_DATA_DIR), "crop": cfg.DATA.TEST_CROP_SIZE,
                 "clips": f"{cfg.TEST.NUM_ENSEMBLE_VIEWS} segment-centred clips of {cfg.DATA.NUM_FRAMES} frames, "
                          f"every {cfg.DATA.SAMPLING_RATE}th {frames}"},
        "software": _software(),
    }


def select_checkpoint(cfg: CfgNode) -> Optional[Path]:
    """The weights to test: TEST.CHECKPOINT_FILE_PATH, else in OUTPUT_DIR/checkpoints best.pyth
    then last.pyth (``TEST.CHECKPOINT_SELECTION best``) or last.pyth (``last``, the official
    recipe); None when there are none."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return Path(cfg.TEST.CHECKPOINT_FILE_PATH)
    folder = checkpoint_dir(cfg)
    names = ("best.pyth", "last.pyth") if cfg.TEST.CHECKPOINT_SELECTION == "best" else ("last.pyth",)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _load_model(cfg: CfgNode, path: Optional[Path]) -> tuple[nn.Module, CfgNode, dict[str, Any]]:
    """The model to test, the config to test it with, and the checkpoint's provenance."""
    if path is None:
        if not cfg.TEST.ALLOW_RANDOM_INIT:
            raise CheckpointError(
                "test: no checkpoint to test (TEST.CHECKPOINT_FILE_PATH is empty and "
                f"{checkpoint_dir(cfg)} has no best.pyth or last.pyth); refusing to report the accuracy of a "
                "randomly initialised model. Set TEST.CHECKPOINT_FILE_PATH, or TEST.ALLOW_RANDOM_INIT True")
        initial = cfg.TRAIN.CHECKPOINT_FILE_PATH
        if initial:
            logger.warning("test: no trained checkpoint; testing %s as training would start it, from %s (%s) "
                           "(TEST.ALLOW_RANDOM_INIT True)", cfg.MODEL.ARCH, initial, cfg.TRAIN.CHECKPOINT_TYPE)
            return build_initialised_model(cfg), cfg, {
                "path": initial, "sha256": ckpt.file_sha256(initial), "epoch": 0, "initial_weights": True,
                "format": cfg.TRAIN.CHECKPOINT_TYPE, "arch": cfg.MODEL.ARCH}
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
    cfg = with_stored_transform(cfg, loaded.test_transform, path)
    num_classes = loaded.arch["kwargs"].get("num_classes")
    if num_classes != cfg.MODEL.NUM_CLASSES:
        logger.warning("test: %s has %s classes, MODEL.NUM_CLASSES is %d; using the checkpoint's", path,
                       num_classes, cfg.MODEL.NUM_CLASSES)
        cfg = with_values(cfg, {"MODEL.NUM_CLASSES": num_classes})
    return model, cfg, {"path": str(path), "sha256": loaded.sha256, "epoch": loaded.epoch,
                        "class_names": loaded.class_names, "arch": loaded.arch["name"],
                        "val_list_sha256": loaded.extra.get("val_list_sha256")}


def _software() -> dict[str, str]:
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "stvit_video": __version__}


def _cost(model: nn.Module, cfg: CfgNode) -> dict[str, Any]:
    """Parameters and fvcore GFLOPs of one view, counted on the model's own device; a counter
    that fails is a warning and a note in the report, never a lost test."""
    side = cfg.DATA.TEST_CROP_SIZE
    cost: dict[str, Any] = {"params_m": count_parameters(model) / 1e6, "input": f"{cfg.DATA.NUM_FRAMES}x{side}x{side}"}
    device = next(model.parameters()).device
    view = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM, cfg.DATA.NUM_FRAMES, side, side, device=device)
    try:
        gflops = count_flops(model, view).total / 1e9
    except Exception as e:  # noqa: BLE001 - FLOP counting (fvcore's tracer) must not cost the results
        logger.warning("test: the FLOPs of %s could not be counted (%s: %s); the report goes without them",
                       type(model).__name__, type(e).__name__, e)
        cost["flops_error"] = f"{type(e).__name__}: {e}"
        return cost
    views = views_per_video(cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS)
    return {**cost, "gflops_per_view": gflops, "gflops_per_video": gflops * views}


def _class_order(checkpoint_names: Optional[list[str]], list_names: Optional[list[str]], source: str,
                 checkpoint: Optional[str], reorder: bool) -> Optional[np.ndarray]:
    """Check the checkpoint's class order against the list's ``classnames.txt``.

    Returns None when they agree (or one side has no names), else (with ``TEST.REORDER_CLASSES``)
    the column of the checkpoint's logits for each class of the list.

    Raises:
        DataError: the names differ in order (naming the first mismatch), or differ as sets.
    """
    if not checkpoint_names or not list_names:
        return None
    common = min(len(checkpoint_names), len(list_names))
    mismatch = next((i for i in range(common) if checkpoint_names[i] != list_names[i]), None)
    if mismatch is None:
        if len(checkpoint_names) != len(list_names):
            logger.warning("test: %s names %d classes, %s names %d; the first %d agree", checkpoint,
                           len(checkpoint_names), source, len(list_names), common)
        return None
    first = (f"class {mismatch} is {list_names[mismatch]!r} in {source} but {checkpoint_names[mismatch]!r} in "
             f"{checkpoint}")
    if not reorder:
        raise DataError(f"test: the class order of the checkpoint and of the test list differ ({first}); the "
                        "predictions would be scored against the wrong labels. Use the classnames.txt the model was "
                        "trained with, or TEST.REORDER_CLASSES True to map the classes by name")
    if sorted(checkpoint_names) != sorted(list_names):
        missing = sorted(set(list_names) - set(checkpoint_names))[:5]
        raise DataError(f"test: TEST.REORDER_CLASSES cannot map the classes by name: {first}, and the list's classes "
                        f"{missing} are not in the checkpoint")
    logger.warning("test: %s; TEST.REORDER_CLASSES maps the checkpoint's classes to the list's by name", first)
    column = {name: i for i, name in enumerate(checkpoint_names)}
    return np.array([column[name] for name in list_names], dtype=np.int64)


def _selected_on(provenance: dict[str, Any], path: Optional[Path], digest: str) -> None:
    """Note in the provenance when the tested weights were chosen by validation on this very list."""
    if path is None or provenance.get("val_list_sha256") != digest:
        return
    best = path.parent / "best.pyth"
    if path.name == "best.pyth" or (best.is_file() and ckpt.file_sha256(best) == provenance.get("sha256")):
        provenance["selected_on_test_list"] = True
        provenance["note"] = ("best.pyth was selected by its validation top-1 on this same list: its accuracy here is "
                              "optimistic; test last.pyth (TEST.CHECKPOINT_SELECTION last) or another list")
        logger.warning("test: %s", provenance["note"])


def _extra_results(cfg: CfgNode, results: EvalResults, shuffled: Optional[Gathered],
                   gflops: Optional[float]) -> dict[str, Any]:
    """The temporal-shuffle check and the other runs of ``TEST.COMPARE_WITH``, for the report."""
    extra: dict[str, Any] = {}
    if shuffled is not None:
        top1 = headline_metrics(dataclasses.replace(results, logits=shuffled.logits, valid=shuffled.valid,
                                                    centre_logits=None, centre_valid=None))["top1"]
        extra["temporally shuffled clips"] = {
            "top1": top1, "note": f"the same views with their {cfg.DATA.NUM_FRAMES} frames in a fixed random order; "
                                  f"{headline_metrics(results)['top1'] - top1:.1f} points below the ordered clips "
                                  "shows how much the model relies on motion"}
    if cfg.TEST.COMPARE_WITH:
        others, skipped = comparison_rows(cfg.TEST.COMPARE_WITH, gflops)
        for reason in skipped:
            logger.warning("TEST.COMPARE_WITH: %s; not in this report", reason)
        extra.update(others)
    return extra


