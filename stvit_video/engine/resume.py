"""Resuming a training run: which checkpoint, which sample, whose random streams.

What a resume preserves (README "What a resume preserves"):

- rank 0 picks the newest checkpoint that loads and every rank loads that same file
  (:func:`resume_choice`);
- the position in samples: a mid-epoch resume continues at the sample where the checkpoint
  stopped, in the same order, also with another ``TRAIN.BATCH_SIZE``, ``TRAIN.ACCUM_STEPS`` or
  number of processes (each remaining sample once, at the LR of its position); another training
  list or ``RNG_SEED`` mid-epoch is refused with the way out (:func:`resume_samples`, checked
  before anything is written);
- weights, optimizer moments and step counts, GradScaler, best metric, and every rank's RNG
  state (:func:`resume`); the config's optimizer hyperparameters are kept and each difference
  from the checkpoint is logged (:func:`stvit_video.engine.checkpoint.load_for_resume`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from stvit_video.datasets.loader import EpochPlan
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.distributed import DistContext
from stvit_video.engine.train_loop import TrainProgress
from stvit_video.utils.errors import CheckpointError
from stvit_video.utils.seed import seed_everything

__all__ = ["batch_layout", "resume", "resume_choice", "resume_samples"]

logger = logging.getLogger(__name__)


def resume_choice(cfg: CfgNode, folder: Path, ctx: DistContext) -> Optional[tuple[Path, dict[str, Any]]]:
    """The checkpoint to resume from, ``(path, state)`` on every rank, or None.

    Rank 0 picks the newest file that loads and tells the others its path, so every rank loads
    the same file even when a save was in flight or a shared folder lags; a rank that cannot
    read it stops every rank with the reason.
    """
    if not cfg.TRAIN.AUTO_RESUME:
        return None
    found = ckpt.find_resumable(folder, logger) if ctx.is_main and folder.is_dir() else None
    chosen = dist_utils.broadcast_object(None if found is None else str(found[0]))
    if chosen is None:
        return None
    error: Optional[BaseException] = None
    if not ctx.is_main:
        try:
            found = (Path(chosen), ckpt.read_resume_state(chosen))
        except CheckpointError as e:
            error = e
    dist_utils.raise_if_any_failed(error)
    return found


def batch_layout(cfg: CfgNode, ctx: DistContext, plan: EpochPlan) -> dict[str, int]:
    """The batch layout of this run, in the terms a checkpoint's ``position`` records."""
    return {"items_per_step": plan.items_per_batch * cfg.TRAIN.ACCUM_STEPS, "items_per_epoch": plan.items_per_epoch,
            "num_items": plan.num_items, "world_size": ctx.world_size, "accum_steps": cfg.TRAIN.ACCUM_STEPS,
            "batch_size": cfg.TRAIN.BATCH_SIZE, "seed": cfg.RNG_SEED, "repeated_samples": cfg.DATA.NUM_REPEATED_SAMPLES}


def resume_samples(cfg: CfgNode, now: dict[str, int], state: dict[str, Any], path: Path) -> int:
    """Samples of the resumed epoch already trained; refuses (before anything is written) a
    mid-epoch resume that would train some samples twice or skip others (another training list
    or seed)."""
    saved, epoch = state.get("position"), int(state["epoch"])
    if saved is None:  # a file of an older version: iterations of its run, assumed to be this run's layout
        samples = int(state["iter_in_epoch"]) // cfg.TRAIN.ACCUM_STEPS * now["items_per_step"]
        if samples:
            logger.warning("resume: %s records no sample position (an older version wrote it); assuming it was "
                           "written with this run's TRAIN.BATCH_SIZE, TRAIN.ACCUM_STEPS and number of processes", path)
        return samples
    samples = saved["samples_in_epoch"]
    layout = [f"{key} {saved[key]} -> {now[key]}" for key in ("batch_size", "accum_steps", "world_size")
              if saved[key] != now[key]]
    if samples == 0:
        if layout:
            logger.info("resume: from epoch %d on the run trains with %s", epoch + 1, ", ".join(layout))
        return 0
    if saved["num_items"] != now["num_items"] or saved["seed"] != now["seed"]:
        raise CheckpointError(
            f"resume: {path} stopped inside epoch {epoch + 1}, after {samples} samples of an order drawn from "
            f"{saved['num_items']} training videos and RNG_SEED {saved['seed']}; now there are {now['num_items']} "
            f"videos and RNG_SEED {now['seed']}, so continuing that epoch would train some videos twice and skip "
            f"others. Restore the training list and RNG_SEED, or {_from_epoch_end(path, epoch)}")
    repeats = saved.get("repeated_samples", 1)  # files before repeated sampling: 1
    if repeats != now["repeated_samples"]:
        raise CheckpointError(
            f"resume: {path} stopped inside epoch {epoch + 1} with DATA.NUM_REPEATED_SAMPLES {repeats}, whose epochs "
            f"walk the videos in parts of 1/{repeats}; with {now['repeated_samples']} the rest of that epoch would "
            f"train some videos twice and skip others. Set DATA.NUM_REPEATED_SAMPLES {repeats} to finish the epoch, "
            f"or {_from_epoch_end(path, epoch)}")
    if layout:
        logger.warning("resume: %s stopped after %d of the %d samples of epoch %d; the run continues from sample "
                       "%d with another layout (%s): each remaining sample of the epoch is trained once, at the LR "
                       "of its position", path, samples, saved["items_per_epoch"], epoch + 1, samples,
                       ", ".join(layout))
    return samples


def _from_epoch_end(path: Path, epoch: int) -> str:
    """The way out of a mid-epoch checkpoint that cannot continue its epoch."""
    return (f"resume from the end of epoch {epoch} by removing {path.name} and any newer mid-epoch checkpoint from "
            f"{path.parent}")


def _restore_rng(cfg: CfgNode, ctx: DistContext, state: dict[str, Any], global_step: int) -> None:
    """Each rank continues its own random streams when the checkpoint holds them."""
    ranks = state.get("rng_ranks")
    if ranks and len(ranks) == ctx.world_size:
        ckpt.restore_rng_state(ranks[ctx.rank])
        return
    if ranks and ctx.is_main:
        logger.info("resume: RNG states of %d processes saved, %d now: rank 0 continues its own, the others "
                    "draw from fresh seeds", len(ranks), ctx.world_size)
    if ctx.is_main:
        ckpt.restore_rng_state(state["rng"])
    else:
        seed_everything(cfg.RNG_SEED + ctx.rank + 1000 * (global_step + 1))


def resume(cfg: CfgNode, ctx: DistContext, choice: tuple[Path, dict[str, Any]], samples: int, bare: nn.Module,
           optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
           layout: dict[str, int]) -> TrainProgress:
    """Load the checkpoint into the model (on its device) and optimizer; where training stands
    (``layout``: this run's :func:`batch_layout`)."""
    path, state = choice
    point = ckpt.load_for_resume(state, bare, optimizer, scaler, source=str(path))
    _restore_rng(cfg, ctx, state, point.global_step)
    logger.info("resuming from %s: epoch %d, sample %d of %d (global step %d)", path, point.epoch + 1, samples,
                layout["items_per_epoch"], point.global_step)
    return TrainProgress(epoch=point.epoch, step_in_epoch=samples // layout["items_per_step"],
                         global_step=point.global_step, best_metric=point.best_metric, samples_in_epoch=samples)
