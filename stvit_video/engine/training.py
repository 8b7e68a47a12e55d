"""Config -> a running :class:`~stvit_video.engine.trainer.Trainer` (``TRAIN.ENABLE True``).

Order matters for users: everything that can fail on bad input (lists, videos folder, batch
split, pretrained checkpoint) is checked before anything is written, so a bad command never
touches the checkpoints of an earlier run.

Derived values, computed once here and logged: the per-rank batch, the LR scaled to the global
batch (``SOLVER.LR_SCALING``), the autocast dtype.
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
from stvit_video.datasets.loader import set_loader_epoch
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.distributed import DistContext
from stvit_video.engine.model_setup import build_initialised_model
from stvit_video.engine.optimizer import build_optimizer
from stvit_video.engine.schedule import WarmupCosine, scale_lr
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
from stvit_video.utils.errors import ConfigError
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
            "num_clips": cfg.TEST.NUM_ENSEMBLE_VIEWS, "num_crops": cfg.TEST.NUM_SPATIAL_CROPS}


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
    model = model.to(ctx.device)
    if ctx.distributed:
        ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.MODEL.COMPILE:
        model = torch.compile(model)
    return model


def train(cfg: CfgNode, ctx: DistContext, on_ready: Optional[Callable[[], None]] = None) -> TrainResult:
    """Train as the config says, on this rank; every rank calls it.

    ``on_ready`` is called (on every rank) once the inputs are checked and before anything is
    written: the launcher creates the output folder and the log file there.

    Raises:
        ConfigError, DataError, CheckpointError: bad input, before anything is written.
        NonFiniteLossError: the loss became NaN/inf (nothing written after it).
    """
    per_rank = _per_rank_batch(cfg, ctx.world_size)
    train_set = build_dataset(cfg, "train")
    val_set = build_dataset(cfg, "val")
    names = train_set.class_names
    if names is not None and len(names) < cfg.MODEL.NUM_CLASSES and ctx.is_main:
        # class folders may cover fewer classes than the head; usually MODEL.NUM_CLASSES was left at 400
        logger.warning("training: the data has %d classes (%s) but MODEL.NUM_CLASSES = %d: the head keeps %d "
                       "outputs, %d of them never trained; set MODEL.NUM_CLASSES %d if that is all there is",
                       len(names), train_set.source, cfg.MODEL.NUM_CLASSES, cfg.MODEL.NUM_CLASSES,
                       cfg.MODEL.NUM_CLASSES - len(names), len(names))
    train_loader = construct_loader(cfg, "train", dataset=train_set, num_replicas=ctx.world_size, rank=ctx.rank)
    val_loader = construct_loader(cfg, "val", dataset=val_set, num_replicas=ctx.world_size, rank=ctx.rank)
    folder = checkpoint_dir(cfg)
    resume = ckpt.find_resumable(folder, logger) if cfg.TRAIN.AUTO_RESUME and folder.is_dir() else None
    seed_everything(cfg.RNG_SEED)  # the same initial weights on every rank
    # a resumed run takes every weight from its own checkpoint; pretrained weights only start a run
    bare = build_model(cfg) if resume is not None else build_initialised_model(cfg)
    if on_ready is not None:
        on_ready()
    device = ctx.device
    dtype = amp_dtype(cfg, device)
    lr = _scaled_lr(cfg)
    optimizer = build_optimizer(cfg, bare, lr=lr, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    progress = TrainProgress()
    seed_everything(cfg.RNG_SEED + ctx.rank)  # ranks draw different dropout / drop-path / MixUp
    if resume is not None:
        path, state = resume
        point = ckpt.load_for_resume(state, bare, optimizer, scaler, source=str(path))
        progress = TrainProgress(epoch=point.epoch, step_in_epoch=point.iter_in_epoch // cfg.TRAIN.ACCUM_STEPS,
                                 global_step=point.global_step, best_metric=point.best_metric)
        if ctx.is_main:
            ckpt.restore_rng_state(state["rng"])
        else:  # only rank 0's generators are saved; the others continue from a fresh, distinct seed
            seed_everything(cfg.RNG_SEED + ctx.rank + 1000 * (point.global_step + 1))
        logger.info("resuming from %s: epoch %d, iteration %d (global step %d)", path, point.epoch + 1,
                    point.iter_in_epoch, point.global_step)
    model = _wrap(bare, cfg, ctx)
    # optimizer state tensors follow their parameters to the device
    for state_per_param in optimizer.state.values():
        for k, v in state_per_param.items():
            if torch.is_tensor(v) and k != "step":
                state_per_param[k] = v.to(device)
    out = Path(cfg.OUTPUT_DIR)
    logger.info("training %s on %d process(es) (%s), %d clips per process per step, %d train / %d val videos",
                cfg.MODEL.ARCH, ctx.world_size, device, per_rank, len(train_set.videos), len(val_set.videos))
    device_transform = build_device_transform(cfg)
    metric_logger = MetricLogger(output_dir=out, is_main=ctx.is_main, tensorboard=cfg.TENSORBOARD.ENABLE)
    validator = Validator(
        evaluate=lambda: run_evaluation(model, val_loader, device=device, device_transform=device_transform,
                                        amp_dtype=dtype),
        period=cfg.TRAIN.EVAL_PERIOD, metric_logger=metric_logger)
    arch = model_arch(cfg)
    cfg_text = cfg.dump()
    trainer: Trainer

    def state_fn() -> dict[str, Any]:
        p = trainer.progress
        return ckpt.build_checkpoint_state(
            model=model, optimizer=optimizer, scaler=scaler, epoch=p.epoch,
            iter_in_epoch=p.step_in_epoch * cfg.TRAIN.ACCUM_STEPS,
            global_step=p.global_step, cfg_text=cfg_text, class_names=train_set.class_names,
            test_transform=test_transform_of(cfg), arch=arch, best_metric=p.best_metric)

    checkpointer = Checkpointer(folder=folder, state_fn=state_fn, is_main=ctx.is_main,
                                period=cfg.TRAIN.CHECKPOINT_PERIOD, period_iters=cfg.TRAIN.CHECKPOINT_PERIOD_ITERS,
                                validator=validator)
    bad_monitor = BadVideoMonitor(counter_factory=lambda: BadVideoCounter(train_set), num_videos=len(train_set.videos),
                                  max_fraction=cfg.DATA.MAX_BAD_VIDEO_FRACTION)
    trainer = Trainer(
        model=model, optimizer=optimizer,
        schedule=WarmupCosine(base_lr=lr, warmup_epochs=cfg.SOLVER.WARMUP_EPOCHS, max_epochs=cfg.SOLVER.MAX_EPOCH,
                              warmup_start_factor=cfg.SOLVER.WARMUP_START_FACTOR,
                              end_factor=cfg.SOLVER.COSINE_END_FACTOR),
        train_loader=train_loader, set_loader_epoch=set_loader_epoch, device_transform=device_transform,
        mixup=build_mixup(cfg), label_smoothing=cfg.TRAIN.LABEL_SMOOTHING, device=device,
        max_epochs=cfg.SOLVER.MAX_EPOCH, accum_steps=cfg.TRAIN.ACCUM_STEPS, clip_grad_norm=cfg.SOLVER.CLIP_GRAD_NORM,
        amp_dtype=dtype, scaler=scaler, log_period=cfg.LOG_PERIOD,
        hooks=[metric_logger, bad_monitor, validator, checkpointer], progress=progress)
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        ckpt.clean_temp_files(folder)
    trainer.train()
    if ctx.distributed:
        dist_utils.check_replicas_equal(model)
        logger.info("training done: the weights are identical on all %d ranks", ctx.world_size)
    return TrainResult(last_validation=validator.last, best_top1=trainer.progress.best_metric,
                       last_checkpoint=checkpointer.saved[-1] if checkpointer.saved else None,
                       best_checkpoint=folder / "best.pyth" if (folder / "best.pyth").exists() else None)
