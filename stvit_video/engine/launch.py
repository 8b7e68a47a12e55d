"""Start a job: processes (torchrun, SlowFast-style spawn, or one), then train and/or test.

    one process       NUM_GPUS 0 (CPU) or 1
    torchrun          torchrun --nproc_per_node N tools/run_net.py ...   (env:// rendezvous;
                      NUM_GPUS / NUM_SHARDS are ignored, torchrun's world size rules)
    spawn             NUM_GPUS N [--num_shards S --shard_id I --init_method tcp://host:port]

Every rank runs :func:`run_job`. Only rank 0 writes the output folder, logs below WARNING and
writes checkpoints; collectives run on every rank in the same order.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from fvcore.common.config import CfgNode

from stvit_video.config import with_values
from stvit_video.datasets.video_list import data_class_names
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.builtin_data import ensure_builtin_data
from stvit_video.utils.cpu_malloc import keep_freed_cpu_memory
from stvit_video.utils.logging import setup_logging

logger = logging.getLogger(__name__)

__all__ = ["launch_job", "prepare_output_dir", "run_job", "with_data_num_classes"]


def prepare_output_dir(cfg: Any) -> Path:
    """Create OUTPUT_DIR and write the merged config to ``OUTPUT_DIR/config.yaml``."""
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.dump(), encoding="utf-8")
    return out


def with_data_num_classes(cfg: CfgNode) -> CfgNode:
    """``cfg`` with ``MODEL.NUM_CLASSES 0`` replaced by the number of classes of its data folder.

    Raises:
        DataError: ``MODEL.NUM_CLASSES`` is 0 and the data folder names no classes.
    """
    if cfg.MODEL.NUM_CLASSES != 0:
        return cfg
    names = data_class_names(cfg.DATA.PATH_TO_DATA_DIR)
    logger.info("MODEL.NUM_CLASSES 0: %d classes in %s", len(names), cfg.DATA.PATH_TO_DATA_DIR)
    return with_values(cfg, {"MODEL.NUM_CLASSES": len(names)})


def _device_kind(cfg: CfgNode) -> str:
    return "cpu" if cfg.NUM_GPUS == 0 else "auto"


def launch_job(cfg: CfgNode) -> dict[str, Any]:
    """Run what the config enables in as many processes as it asks for; returns rank 0's results."""
    timeout = float(cfg.DIST.TIMEOUT_S)
    if dist_utils.torchrun_env():
        ctx = dist_utils.init_distributed(backend=cfg.DIST.BACKEND, device=_device_kind(cfg), timeout_s=timeout)
        try:
            results = run_job(ctx, cfg)
        except BaseException:
            dist_utils.destroy()
            raise
        dist_utils.destroy(wait_for_all=True)
        return results
    nprocs = max(cfg.NUM_GPUS, 1)
    if nprocs * cfg.NUM_SHARDS > 1:
        dist_utils.spawn(_spawned_job, args=(cfg,), nprocs=nprocs, num_shards=cfg.NUM_SHARDS,
                         shard_id=cfg.SHARD_ID, init_method=cfg.DIST.INIT_METHOD or None,
                         backend=cfg.DIST.BACKEND, device=_device_kind(cfg), timeout_s=timeout)
        return {}
    ctx = dist_utils.init_distributed(world_size=1, rank=0, local_rank=0, device=_device_kind(cfg))
    return run_job(ctx, cfg)


def _spawned_job(ctx: dist_utils.DistContext, cfg: CfgNode) -> None:
    if ctx.device.type == "cpu":  # processes of one node share its cores (torchrun does the same)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(cfg.NUM_GPUS, 1)))
    run_job(ctx, cfg)


def run_job(ctx: dist_utils.DistContext, cfg: CfgNode) -> dict[str, Any]:
    """Train if TRAIN.ENABLE, then test if TEST.ENABLE, on this rank."""
    from stvit_video.engine.test_job import test
    from stvit_video.engine.train_job import train

    setup_logging(None, rank=ctx.rank)  # the log file is added once the output folder exists
    if ctx.device.type == "cpu" and cfg.CPU_MALLOC_REUSE:
        keep_freed_cpu_memory()
    if ctx.is_main:
        ensure_builtin_data(cfg)
    dist_utils.barrier()  # the other ranks wait for the data rank 0 may be generating
    cfg = with_data_num_classes(cfg)
    results: dict[str, Any] = {}
    if not cfg.TRAIN.ENABLE and not cfg.TEST.ENABLE:
        logger.info("nothing to run: TRAIN.ENABLE and TEST.ENABLE are both False")
        return results
    opened: list[bool] = []

    def on_ready() -> None:  # a run that trains and then tests opens the output folder once
        if not opened:
            _open_output(cfg, ctx)
            opened.append(True)

    if cfg.TRAIN.ENABLE:
        results["train"] = train(cfg, ctx, on_ready=on_ready)
    if cfg.TEST.ENABLE:
        results["test"] = test(cfg, ctx, on_ready=on_ready)
    return results


def _open_output(cfg: CfgNode, ctx: dist_utils.DistContext) -> None:
    """Once the inputs are checked: create OUTPUT_DIR, dump the config, log to stdout.log (rank 0).
    """
    if ctx.is_main:
        out = prepare_output_dir(cfg)
        setup_logging(out, rank=ctx.rank)
        logger.info("config written to %s", out / "config.yaml")
    dist_utils.barrier()
