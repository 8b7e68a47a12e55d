"""Config -> a running :class:`~stvit_video.engine.trainer.Trainer` (``TRAIN.ENABLE True``).

Order matters for users: everything that can fail on bad input (lists, videos folder, batch
split, pretrained checkpoint) is checked before anything is written, so a bad command never
touches the checkpoints of an earlier run.

Derived values, computed once here and logged: the per-rank batch, the LR scaled to the global
batch (``SOLVER.LR_SCALING``), the autocast dtype.

Order on a device: the model is moved to its device, then the optimizer is built over the
parameters there (fused AdamW on CUDA), then a resumed state is loaded into both, so every
state tensor (fused AdamW's ``step`` included) lands where its parameter is; DDP and
``torch.compile`` wrap the model last (compile wraps DDP), and validation runs the bare model.

Resume (``TRAIN.AUTO_RESUME``), what it preserves:

- rank 0 picks the newest checkpoint that loads and every rank loads that same file;
- weights, optimizer moments and step counts, GradScaler, best metric and every rank's RNG
  state; the config's optimizer hyperparameters (weight decay, LR multipliers, betas) are kept
  and each difference from the checkpoint is logged;
- the position in samples: a mid-epoch resume continues at the sample where the checkpoint
  stopped, in the same order, also with another ``TRAIN.BATCH_SIZE``, ``TRAIN.ACCUM_STEPS`` or
  number of processes (each remaining sample once, at the LR of its position); another
  training list or ``RNG_SEED`` mid-epoch is refused with the way out;
- the logs: rows of ``stats.jsonl`` and TensorBoard events written after the checkpoint by the
  killed run are dropped, so replayed steps are not logged twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from stvit_video.datasets import BadVideoCounter, build_dataset, build_mixup, construct_loader
from stvit_video.datasets.device_transforms import build_device_transform
from stvit_video.datasets.loader import EpochPlan, epoch_plan, set_loader_epoch
from stvit_video.datasets.video_list import records_digest
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.distributed import DistContext
from stvit_video.engine.model_setup import build_initialised_model
from stvit_video.engine.optimizer import build_optimizer
from stvit_video.engine.schedule import LRSchedule, scale_lr
from stvit_video.engine.trainer import (
    BadVideoMonitor,
    Checkpointer,
    MetricLogger,
    TrainProgress,
    Trainer,
    Validator,
    run_evaluation,
)
from stvit_video.models import build_model, model_arch
from stvit_video.utils.errors import CheckpointError, ConfigError
from stvit_video.utils.seed import seed_everything

__all__ = ["AMP_DTYPES", "TrainResult", "amp_dtype", "checkpoint_dir", "test_transform_of", "train"]

logger = logging.getLogger(__name__)

# TRAIN.AMP_DTYPE choices
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """What a finished training run leaves: its last validation and its checkpoints."""

    last_validation: Optional[dict[str, float]]
    best_top1: Optional[float]
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]


def checkpoint_dir(cfg: CfgNode) -> Path:
    """``OUTPUT_DIR/checkpoints``."""
    return Path(cfg.OUTPUT_DIR) / "checkpoints"


def amp_dtype(cfg: CfgNode, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype: ``TRAIN.AMP_DTYPE`` on CUDA with ``TRAIN.MIXED_PRECISION``, else None (fp32)."""
    if device.type != "cuda" or not cfg.TRAIN.MIXED_PRECISION:
        return None
    return AMP_DTYPES[cfg.TRAIN.AMP_DTYPE]


def test_transform_of(cfg: CfgNode) -> dict[str, Any]:
    """What a checkpoint records so inference needs no config: the test-time transform and views."""
    return {"mean": list(cfg.DATA.MEAN), "std": list(cfg.DATA.STD), "short_side": cfg.DATA.TEST_CROP_SIZE,
            "crop": cfg.DATA.TEST_CROP_SIZE, "num_frames": cfg.DATA.NUM_FRAMES,
            "sampling_rate": cfg.DATA.SAMPLING_RATE, "target_fps": float(cfg.DATA.TARGET_FPS),
            "num_clips": cfg.TEST.NUM_ENSEMBLE_VIEWS, "num_crops": cfg.TEST.NUM_SPATIAL_CROPS,
            "out_of_bound": cfg.DATA.OUT_OF_BOUND}


def _per_rank_batch(cfg: CfgNode, world_size: int) -> int:
    batch = cfg.TRAIN.BATCH_SIZE
    if batch % world_size:
        raise ConfigError(f"TRAIN.BATCH_SIZE = {batch}: the global batch must be divisible by the {world_size} "
                          "processes (NUM_GPUS x NUM_SHARDS, or torchrun's world size)")
    return batch // world_size


def _scaled_lr(cfg: CfgNode) -> float:
    global_batch = cfg.TRAIN.BATCH_SIZE * cfg.TRAIN.ACCUM_STEPS
    lr = scale_lr(cfg.SOLVER.BASE_LR, global_batch=global_batch, reference_batch=cfg.SOLVER.REFERENCE_BATCH_SIZE,
                  rule=cfg.SOLVER.LR_SCALING)
    logger.info("LR %.3g: SOLVER.BASE_LR %.3g for a global batch of %d, %s scaling to %d clips per step "
                "(TRAIN.BATCH_SIZE %d x TRAIN.ACCUM_STEPS %d)", lr, cfg.SOLVER.BASE_LR,
                cfg.SOLVER.REFERENCE_BATCH_SIZE, cfg.SOLVER.LR_SCALING, global_batch, cfg.TRAIN.BATCH_SIZE,
                cfg.TRAIN.ACCUM_STEPS)
    return lr


def _wrap(model: nn.Module, cfg: CfgNode, ctx: DistContext) -> nn.Module:
    """DDP (several processes), then torch.compile over it (MODEL.COMPILE), as PyTorch advises."""
    if ctx.distributed:
        ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.MODEL.COMPILE:
        model = torch.compile(model)
    return model


def _resume_choice(cfg: CfgNode, folder: Path, ctx: DistContext) -> Optional[tuple[Path, dict[str, Any]]]:
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


def _position_now(cfg: CfgNode, ctx: DistContext, plan: EpochPlan) -> dict[str, int]:
    """The batch layout of this run, in the terms a checkpoint's ``position`` records."""
    return {"items_per_step": plan.items_per_batch * cfg.TRAIN.ACCUM_STEPS, "items_per_epoch": plan.items_per_epoch,
            "num_items": plan.num_items, "world_size": ctx.world_size, "accum_steps": cfg.TRAIN.ACCUM_STEPS,
            "batch_size": cfg.TRAIN.BATCH_SIZE, "seed": cfg.RNG_SEED}


def _resume_samples(cfg: CfgNode, now: dict[str, int], state: dict[str, Any], path: Path) -> int:
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
            f"others. Restore the training list and RNG_SEED, or resume from the end of epoch {epoch} by "
            f"removing {path.name} and any newer mid-epoch checkpoint from {path.parent}")
    if layout:
        logger.warning("resume: %s stopped after %d of the %d samples of epoch %d; the run continues from sample "
                       "%d with another layout (%s): each remaining sample of the epoch is trained once, at the LR "
                       "of its position", path, samples, saved["items_per_epoch"], epoch + 1, samples,
                       ", ".join(layout))
    return samples


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


def _resume(cfg: CfgNode, ctx: DistContext, choice: tuple[Path, dict[str, Any]], samples: int, bare: nn.Module,
            optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], plan: EpochPlan) -> TrainProgress:
    """Load the checkpoint into the model (on its device) and optimizer; where training stands."""
    path, state = choice
    point = ckpt.load_for_resume(state, bare, optimizer, scaler, source=str(path))
    _restore_rng(cfg, ctx, state, point.global_step)
    logger.info("resuming from %s: epoch %d, sample %d of %d (global step %d)", path, point.epoch + 1, samples,
                plan.items_per_epoch, point.global_step)
    items_per_step = plan.items_per_batch * cfg.TRAIN.ACCUM_STEPS
    return TrainProgress(epoch=point.epoch, step_in_epoch=samples // items_per_step,
                         global_step=point.global_step, best_metric=point.best_metric, samples_in_epoch=samples)


def _warn_pretrained_lr(cfg: CfgNode) -> None:
    if cfg.TRAIN.CHECKPOINT_FILE_PATH and cfg.SOLVER.BACKBONE_LR_MULT == 1.0:
        logger.warning("training: the backbone starts from pretrained weights (TRAIN.CHECKPOINT_FILE_PATH %s) but "
                       "SOLVER.BACKBONE_LR_MULT is 1.0; the official Video Swin recipe fine-tunes a pretrained "
                       "backbone at 0.1 x the LR (the *_in1k configs set it): set SOLVER.BACKBONE_LR_MULT 0.1 "
                       "unless this is meant", cfg.TRAIN.CHECKPOINT_FILE_PATH)


def _warn_fewer_classes(cfg: CfgNode, train_set: Any) -> None:
    names = train_set.class_names
    if names is not None and len(names) < cfg.MODEL.NUM_CLASSES:
        # class folders may cover fewer classes than the head; usually MODEL.NUM_CLASSES was left at 400
        logger.warning("training: the data has %d classes (%s) but MODEL.NUM_CLASSES = %d: the head keeps %d "
                       "outputs, %d of them never trained; set MODEL.NUM_CLASSES %d if that is all there is",
                       len(names), train_set.source, cfg.MODEL.NUM_CLASSES, cfg.MODEL.NUM_CLASSES,
                       cfg.MODEL.NUM_CLASSES - len(names), len(names))


def train(cfg: CfgNode, ctx: DistContext, on_ready: Optional[Callable[[], None]] = None) -> TrainResult:
    """Train as the config says, on this rank; every rank calls it.

    ``on_ready`` is called (on every rank) once the inputs are checked and before anything is
    written: the launcher creates the output folder and the log file there. The model is on
    its device before the optimizer is built, and a resumed state is loaded into both there.

    Raises:
        ConfigError, DataError, CheckpointError: bad input, before anything is written.
        NonFiniteLossError: the loss became NaN/inf (nothing written after it).
    """
    per_rank = _per_rank_batch(cfg, ctx.world_size)
    train_set, val_set = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    if ctx.is_main:
        _warn_fewer_classes(cfg, train_set)
    train_loader = construct_loader(cfg, "train", dataset=train_set, num_replicas=ctx.world_size, rank=ctx.rank)
    val_loader = construct_loader(cfg, "val", dataset=val_set, num_replicas=ctx.world_size, rank=ctx.rank)
    plan = epoch_plan(train_loader)
    folder = checkpoint_dir(cfg)
    choice = _resume_choice(cfg, folder, ctx)
    samples = 0 if choice is None else _resume_samples(cfg, _position_now(cfg, ctx, plan), choice[1], choice[0])
    seed_everything(cfg.RNG_SEED)  # the same initial weights on every rank
    # a resumed run takes every weight from its own checkpoint; pretrained weights only start a run
    bare = build_model(cfg) if choice is not None else build_initialised_model(cfg)
    if choice is None and ctx.is_main:
        _warn_pretrained_lr(cfg)
    if on_ready is not None:
        on_ready()
    device = ctx.device
    bare.to(device)
    dtype = amp_dtype(cfg, device)
    lr = _scaled_lr(cfg)
    optimizer = build_optimizer(cfg, bare, lr=lr)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    seed_everything(cfg.RNG_SEED + ctx.rank)  # ranks draw different dropout / drop-path / MixUp
    progress = TrainProgress() if choice is None else _resume(cfg, ctx, choice, samples, bare, optimizer, scaler,
                                                              plan)
    model = _wrap(bare, cfg, ctx)
    logger.info("training %s on %d process(es) (%s), %d clips per process per step, %d train / %d val videos",
                cfg.MODEL.ARCH, ctx.world_size, device, per_rank, len(train_set.videos), len(val_set.videos))
    trainer = _build_trainer(cfg, ctx, model, optimizer, scaler, lr, dtype, train_loader, val_loader, plan, progress,
                             resumed_at=None if choice is None else progress.global_step,
                             class_names=train_set.class_names, val_digest=records_digest(val_set.videos))
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        ckpt.clean_temp_files(folder)
    trainer.train()
    if ctx.distributed:
        dist_utils.check_replicas_equal(model)
        logger.info("training done: the weights are identical on all %d ranks", ctx.world_size)
    checkpointer = next(h for h in trainer.hooks if isinstance(h, Checkpointer))
    validator = next(h for h in trainer.hooks if isinstance(h, Validator))
    return TrainResult(last_validation=validator.last, best_top1=trainer.progress.best_metric,
                       last_checkpoint=checkpointer.saved[-1] if checkpointer.saved else None,
                       best_checkpoint=folder / "best.pyth" if (folder / "best.pyth").exists() else None)


def _build_trainer(cfg: CfgNode, ctx: DistContext, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: Optional[torch.amp.GradScaler], lr: float, dtype: Optional[torch.dtype], train_loader: Any,
                   val_loader: Any, plan: EpochPlan, progress: TrainProgress, *, resumed_at: Optional[int],
                   class_names: Optional[list[str]], val_digest: str) -> Trainer:
    """The :class:`Trainer` and its hooks (logging, bad videos, validation, checkpoints)."""
    device = ctx.device
    device_transform = build_device_transform(cfg)
    metric_logger = MetricLogger(output_dir=Path(cfg.OUTPUT_DIR), is_main=ctx.is_main,
                                 tensorboard=cfg.TENSORBOARD.ENABLE, resumed_at=resumed_at)
    validator = Validator(
        evaluate=lambda: run_evaluation(model, val_loader, device=device, device_transform=device_transform,
                                        amp_dtype=dtype),
        period=cfg.TRAIN.EVAL_PERIOD, metric_logger=metric_logger)
    arch, cfg_text, transform = model_arch(cfg), cfg.dump(), test_transform_of(cfg)
    layout = _position_now(cfg, ctx, plan)
    trainer: Trainer

    def state_fn(rng_ranks: list[Any]) -> dict[str, Any]:
        p = trainer.progress
        return ckpt.build_checkpoint_state(
            model=model, optimizer=optimizer, scaler=scaler, epoch=p.epoch,
            iter_in_epoch=p.step_in_epoch * cfg.TRAIN.ACCUM_STEPS, global_step=p.global_step,
            position={"samples_in_epoch": p.samples_in_epoch, **layout}, rng_ranks=rng_ranks, cfg_text=cfg_text,
            class_names=class_names, test_transform=transform, arch=arch, best_metric=p.best_metric,
            extra={"val_list_sha256": val_digest})

    checkpointer = Checkpointer(folder=checkpoint_dir(cfg), state_fn=state_fn, is_main=ctx.is_main,
                                period=cfg.TRAIN.CHECKPOINT_PERIOD, period_iters=cfg.TRAIN.CHECKPOINT_PERIOD_ITERS,
                                validator=validator, timeout_s=cfg.DIST.TIMEOUT_S)
    train_set = train_loader.dataset
    bad_monitor = BadVideoMonitor(counter_factory=lambda: BadVideoCounter(train_set), num_videos=len(train_set.videos),
                                  max_fraction=cfg.DATA.MAX_BAD_VIDEO_FRACTION)
    trainer = Trainer(
        model=model, optimizer=optimizer,
        schedule=LRSchedule(policy=cfg.SOLVER.LR_POLICY, base_lr=lr, warmup_epochs=cfg.SOLVER.WARMUP_EPOCHS,
                            max_epochs=cfg.SOLVER.MAX_EPOCH, warmup_start_factor=cfg.SOLVER.WARMUP_START_FACTOR,
                            end_factor=cfg.SOLVER.COSINE_END_FACTOR),
        train_loader=train_loader, set_loader_epoch=set_loader_epoch, items_per_batch=plan.items_per_batch,
        items_per_epoch=plan.items_per_epoch, device_transform=device_transform, mixup=build_mixup(cfg),
        label_smoothing=cfg.TRAIN.LABEL_SMOOTHING, device=device, max_epochs=cfg.SOLVER.MAX_EPOCH,
        accum_steps=cfg.TRAIN.ACCUM_STEPS, clip_grad_norm=cfg.SOLVER.CLIP_GRAD_NORM, amp_dtype=dtype, scaler=scaler,
        log_period=cfg.LOG_PERIOD, hooks=[metric_logger, bad_monitor, validator, checkpointer], progress=progress)
    return trainer
