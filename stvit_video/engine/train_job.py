"""Config -> a running :class:`~stvit_video.engine.train_loop.Trainer` (``TRAIN.ENABLE True``).

Order matters for users: everything that can fail on bad input (lists, videos folder, batch
split, pretrained checkpoint, a mid-epoch resume that cannot continue) is checked before
anything is written, so a bad command never touches the checkpoints of an earlier run.

Derived values, computed once here and logged: the per-rank batch, the LR scaled to the global
batch (``SOLVER.LR_SCALING``), the autocast dtype.

Order on a device: the model is moved to its device, then the optimizer is built over the
parameters there (fused AdamW on CUDA), then a resumed state is loaded into both
(:mod:`stvit_video.engine.resume`), so every state tensor (fused AdamW's ``step`` included)
lands where its parameter is; DDP and ``torch.compile`` wrap the model last (compile wraps DDP),
and validation runs the bare model.
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
from stvit_video.engine.hooks import BadVideoMonitor, Checkpointer, MetricLogger, Validator
from stvit_video.engine.job_setup import amp_dtype, checkpoint_dir, test_transform_of
from stvit_video.engine.model_setup import build_initialised_model
from stvit_video.engine.optimizer import build_optimizer
from stvit_video.engine.resume import batch_layout, resume, resume_choice, resume_samples
from stvit_video.engine.schedule import LRSchedule, scale_lr
from stvit_video.engine.train_loop import TrainProgress, Trainer, run_evaluation
from stvit_video.models import build_model, model_arch
from stvit_video.utils.errors import ConfigError
from stvit_video.utils.seed import seed_everything

__all__ = ["TrainResult", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished training run leaves: its last validation and its checkpoints."""

    last_validation: Optional[dict[str, float]]
    best_top1: Optional[float]
    last_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]


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
    layout = batch_layout(cfg, ctx, plan)
    choice = resume_choice(cfg, checkpoint_dir(cfg), ctx)
    samples = 0 if choice is None else resume_samples(cfg, layout, choice[1], choice[0])
    bare = _initial_model(cfg, resumed=choice is not None, is_main=ctx.is_main)
    if on_ready is not None:
        on_ready()
    bare.to(ctx.device)
    lr = _scaled_lr(cfg)
    optimizer = build_optimizer(cfg, bare, lr=lr)
    scaler = torch.amp.GradScaler(ctx.device.type) if amp_dtype(cfg, ctx.device) == torch.float16 else None
    seed_everything(cfg.RNG_SEED + ctx.rank)  # ranks draw different dropout / drop-path / MixUp
    progress = (TrainProgress() if choice is None else
                resume(cfg, ctx, choice, samples, bare, optimizer, scaler, layout))
    model = _wrap(bare, cfg, ctx)
    logger.info("training %s on %d process(es) (%s), %d clips per process per step, %d train / %d val videos",
                cfg.MODEL.ARCH, ctx.world_size, ctx.device, per_rank, len(train_set.videos), len(val_set.videos))
    if train_set.clips_per_item > 1:
        logger.info("repeated sampling: %d clips per decoded window (%g clip spans); an epoch is %d videos, each "
                    "video once every %d epochs", train_set.clips_per_item, cfg.DATA.REPEATED_SAMPLE_WINDOW,
                    plan.items_per_epoch, train_set.clips_per_item)
    trainer = _build_trainer(cfg, ctx, model, optimizer, scaler, lr, train_loader, val_loader, plan, layout,
                             progress, resumed_at=None if choice is None else progress.global_step)
    return _run(trainer, ctx, model, checkpoint_dir(cfg))


def _initial_model(cfg: CfgNode, *, resumed: bool, is_main: bool) -> nn.Module:
    """The model on the CPU, the same on every rank: a resumed run takes every weight from its own
    checkpoint (loaded later, on the device); pretrained weights only start a run."""
    seed_everything(cfg.RNG_SEED)
    if resumed:
        return build_model(cfg)
    if is_main:
        _warn_pretrained_lr(cfg)
    return build_initialised_model(cfg)


def _run(trainer: Trainer, ctx: DistContext, model: nn.Module, folder: Path) -> TrainResult:
    """Train to the end; check that the ranks agree; what the run left."""
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
                   scaler: Optional[torch.amp.GradScaler], lr: float, train_loader: Any, val_loader: Any,
                   plan: EpochPlan, layout: dict[str, int], progress: TrainProgress, *,
                   resumed_at: Optional[int]) -> Trainer:
    """The :class:`Trainer` and its hooks (logging, bad videos, validation, checkpoints)."""
    device, dtype = ctx.device, amp_dtype(cfg, ctx.device)
    class_names, val_digest = train_loader.dataset.class_names, records_digest(val_loader.dataset.videos)
    device_transform = build_device_transform(cfg)
    metric_logger = MetricLogger(output_dir=Path(cfg.OUTPUT_DIR), is_main=ctx.is_main,
                                 tensorboard=cfg.TENSORBOARD.ENABLE, resumed_at=resumed_at)
    validator = Validator(
        evaluate=lambda: run_evaluation(model, val_loader, device=device, device_transform=device_transform,
                                        amp_dtype=dtype),
        period=cfg.TRAIN.EVAL_PERIOD, metric_logger=metric_logger)
    arch, cfg_text, transform = model_arch(cfg), cfg.dump(), test_transform_of(cfg)
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
