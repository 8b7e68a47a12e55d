"""The training loop: :class:`Trainer` runs epochs of optimizer steps; hooks do the rest.

The loop knows nothing of configs. It owns the hot path (device transfer, device-side
normalisation, MixUp, autocast, gradient accumulation, clipping, the optimizer step, the LR
schedule) and calls hooks around it, as detectron2's ``TrainerBase`` does::

    before_train -> [before_epoch -> (step -> after_step) x N -> after_epoch] x E -> after_train

The hooks (logging, bad videos, validation, checkpoints) live in :mod:`stvit_video.engine.hooks`;
:mod:`stvit_video.engine.train_job` builds the loop and its hooks from a config.

Progress is counted in samples (dataset items, all ranks together) within an epoch: a step
takes ``accum_steps`` loader batches of ``items_per_batch`` items, and an epoch runs steps while
a whole step still fits in its ``items_per_epoch`` positions (the last incomplete step is not
loaded). The LR of a step is the schedule at ``epoch + fraction``, the fraction of the epoch's
steps done before its last loader batch. Because the position is a sample count, a run resumed
mid-epoch with another batch, ``accum_steps`` or number of ranks continues at the same sample
with the LR of that position (see :mod:`stvit_video.engine.resume`).
Hot-path rule: no host-device synchronisation per step; values are read every ``log_period``
steps, when the meters are synced across ranks.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine.meters import EvalMeter, TrainMeter
from stvit_video.engine.schedule import LRSchedule, set_lr
from stvit_video.utils.errors import DataError, TrainingError

__all__ = ["HookBase", "NonFiniteLossError", "StepFunction", "TrainProgress", "Trainer", "autocast_or_fp32",
           "run_evaluation", "soft_target_cross_entropy"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or inf; the message names the epoch and iteration."""


@dataclass
class TrainProgress:
    """Where training stands.

    Attributes:
        epoch: 0-based epoch being run (= completed epochs at an epoch boundary).
        step_in_epoch: optimizer steps done in ``epoch`` (at this run's step size).
        global_step: optimizer steps since the start of training.
        best_metric: best validation top-1 so far (percent), or None.
        samples_in_epoch: items of ``epoch`` consumed by all ranks: where the epoch continues.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_metric: Optional[float] = None
    samples_in_epoch: int = 0


def autocast_or_fp32(device_type: str, dtype: Optional[torch.dtype]) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device_type``; a no-op context for ``dtype`` None (fp32).
    Every forward of the toolkit (training step, validation, multi-view test, benchmarks) enters this."""
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft targets: (B, K) logits, (B, K) rows summing to 1."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


class StepFunction:
    """The loop's optimizer step on batches already on the device and normalised: the forward
    under autocast, the loss (hard labels with label smoothing, or MixUp's soft targets), the
    backward (scaled for fp16, divided over the accumulated micro-batches), then gradient
    clipping, the optimizer step and ``zero_grad``. :class:`Trainer` runs every step through it,
    and the benchmark times this very object (:mod:`stvit_video.bench.models`).

    Args:
        model: on the device, possibly wrapped (DDP, torch.compile).
        optimizer: over its parameters.
        device_type: ``"cuda"`` / ``"cpu"`` (autocast's device).
        amp_dtype: autocast dtype, or None (fp32).
        scaler: a GradScaler (fp16) or None.
        label_smoothing: for the hard-label loss.
        accum_steps: micro-batches per optimizer step (each loss is divided by it).
        clip_grad_norm: clip the global gradient norm to this (0 = off).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, device_type: str,
                 amp_dtype: Optional[torch.dtype] = None, scaler: Optional[torch.amp.GradScaler] = None,
                 label_smoothing: float = 0.0, accum_steps: int = 1, clip_grad_norm: float = 0.0) -> None:
        self.model, self.optimizer, self.device_type = model, optimizer, device_type
        self.amp_dtype, self.scaler = amp_dtype, scaler
        self.label_smoothing, self.accum_steps, self.clip_grad_norm = label_smoothing, accum_steps, clip_grad_norm

    def backward(self, frames: torch.Tensor, labels: torch.Tensor,
                 targets: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one micro-batch: (B, C, T, H, W) float frames, (B,) labels and
        optional (B, K) soft targets; returns the (unscaled) loss and the float logits (B, K)."""
        with autocast_or_fp32(self.device_type, self.amp_dtype):
            logits = self.model(frames)
        logits = logits.float()
        if targets is not None:
            loss = soft_target_cross_entropy(logits, targets)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        scaled = loss / self.accum_steps
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss, logits

    def update(self) -> None:
        """Clip, step and zero the gradients accumulated since the last update."""
        if self.clip_grad_norm > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __call__(self, frames: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A whole optimizer step on one batch (no accumulation); returns the loss."""
        loss, _ = self.backward(frames, labels)
        self.update()
        return loss


class HookBase:
    """Called by :class:`Trainer` around steps and epochs; ``self.trainer`` is set on registration."""

    trainer: "Trainer"

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_epoch(self) -> None: ...

    def after_epoch(self) -> None: ...

    def after_step(self) -> None: ...


class Trainer:
    """Runs training; every rank constructs one with the same arguments.

    Args:
        model: on ``device``, possibly wrapped in DDP / torch.compile.
        optimizer: with ``lr_mult`` per parameter group (see ``engine/optimizer.py``).
        schedule: LR per position (:class:`~stvit_video.engine.schedule.LRSchedule`).
        train_loader: yields :class:`~stvit_video.datasets.loader.VideoBatch` with uint8 frames.
        set_loader_epoch: ``(loader, epoch, start)``, positions the loader's sampler at global
            position ``start`` of ``epoch``, so a resumed epoch continues in the same order.
        items_per_batch: items one loader batch takes on all ranks together.
        items_per_epoch: positions of an epoch on all ranks together.
        device_transform: uint8 batch -> normalised float batch, on the device.
        mixup: ``(frames, labels) -> (frames, soft targets)`` or None.
        label_smoothing: for the hard-label loss (MixUp's targets are smoothed by MixUp).
        device: where the step runs.
        max_epochs: epochs to train.
        accum_steps: loader batches per optimizer step.
        clip_grad_norm: clip the global gradient norm to this (0 = off).
        amp_dtype: autocast dtype on CUDA (None = fp32).
        scaler: a GradScaler (fp16) or None.
        log_period: optimizer steps between meter syncs (and NaN checks).
        hooks: called in order.
        progress: where to start (from a checkpoint), default the beginning.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                 train_loader: Iterable, set_loader_epoch: Callable[[Any, int, int], None],
                 items_per_batch: int, items_per_epoch: int,
                 device_transform: Callable[[torch.Tensor, bool], torch.Tensor],
                 mixup: Optional[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]],
                 label_smoothing: float, device: torch.device, max_epochs: int, accum_steps: int = 1,
                 clip_grad_norm: float = 0.0, amp_dtype: Optional[torch.dtype] = None,
                 scaler: Optional[torch.amp.GradScaler] = None, log_period: int = 10,
                 hooks: Sequence[HookBase] = (), progress: Optional[TrainProgress] = None) -> None:
        if accum_steps < 1:
            raise ValueError(f"Trainer: accum_steps must be >= 1, got {accum_steps}")
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.train_loader, self._set_loader_epoch = train_loader, set_loader_epoch
        self.device_transform, self.mixup = device_transform, mixup
        self.device, self.max_epochs, self.accum_steps = device, max_epochs, accum_steps
        # autocast, the loss, loss scaling and clipping belong to the step function
        self.step_fn = StepFunction(model, optimizer, device_type=device.type, amp_dtype=amp_dtype, scaler=scaler,
                                    label_smoothing=label_smoothing, accum_steps=accum_steps,
                                    clip_grad_norm=clip_grad_norm)
        self.log_period = log_period
        self.items_per_batch, self.items_per_epoch = items_per_batch, items_per_epoch
        self.items_per_step = items_per_batch * accum_steps
        self.steps_per_epoch = items_per_epoch // self.items_per_step
        if self.steps_per_epoch < 1:
            raise DataError(f"training: an epoch of {items_per_epoch} videos is shorter than one optimizer step of "
                            f"{self.items_per_step} ({items_per_batch} per batch x TRAIN.ACCUM_STEPS = {accum_steps}); "
                            "use more videos or a smaller TRAIN.BATCH_SIZE")
        self.progress = progress or TrainProgress()
        self.meter = TrainMeter(device=device)
        self.batch_log: list[Any] = []  # the current step's batches, for hooks (bad-video counts)
        self.stats_listeners: list[Callable[[dict[str, Any]], None]] = []  # get every synced window
        self._unsynced_steps = 0
        self.hooks: list[HookBase] = []
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)
        # per-step non-finite flags of the current window, left on the device until a sync
        self._window_flags: list[tuple[int, int, torch.Tensor]] = []
        self._last_lr = 0.0

    # --- loop -----------------------------------------------------------------------------------
    def train(self) -> None:
        """Run from ``self.progress`` to ``max_epochs``; ``after_train`` runs even on errors."""
        self._call("before_train")
        try:
            while self.progress.epoch < self.max_epochs:
                self._call("before_epoch")
                self.run_epoch()
                self.progress.epoch += 1
                self.progress.step_in_epoch = 0
                self.progress.samples_in_epoch = 0
                self._call("after_epoch")
        finally:
            self._call("after_train")

    @property
    def epoch_done(self) -> bool:
        """No whole step fits in the rest of the epoch."""
        return self.items_per_epoch - self.progress.samples_in_epoch < self.items_per_step

    def step_fraction(self) -> float:
        """Where the next step is in its epoch, for the LR: the fraction of the epoch's
        ``steps_per_epoch x items_per_step`` samples consumed before its last loader batch."""
        epoch_items = self.steps_per_epoch * self.items_per_step
        position = self.progress.samples_in_epoch + (self.accum_steps - 1) * self.items_per_batch
        # a run resumed with another step size may start its last step past the last full one
        return min(position, epoch_items - 1) / epoch_items

    def run_epoch(self) -> None:
        """Optimizer steps from ``samples_in_epoch`` to the end of ``progress.epoch``."""
        p = self.progress
        self.model.train()
        self.meter.reset()
        self._set_loader_epoch(self.train_loader, p.epoch, p.samples_in_epoch)
        batches = iter(self.train_loader)
        while not self.epoch_done:
            self.run_step(batches)
            p.samples_in_epoch += self.items_per_step
            p.step_in_epoch += 1
            p.global_step += 1
            self._unsynced_steps += 1
            self._call("after_step")

    def run_step(self, batches: Iterable) -> None:
        """One optimizer step over ``accum_steps`` loader batches."""
        p = self.progress
        lr = self.schedule.at(p.epoch, self.step_fraction())
        set_lr(self.optimizer, lr)
        self._last_lr = lr
        self.batch_log = []
        for micro in range(self.accum_steps):
            start = time.perf_counter()
            batch = next(batches)
            data_time = time.perf_counter() - start
            self.batch_log.append(batch)
            last = micro == self.accum_steps - 1
            # DDP: all-reduce gradients only on the last micro-batch of a step
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                loss, logits, labels = self._forward_backward(batch)
            self.meter.update(loss.detach(), logits.detach(), labels, labels.shape[0], data_time,
                              time.perf_counter() - start)
            self._note_nonfinite(loss.detach())
        self.step_fn.update()

    def _forward_backward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = batch.frames.to(self.device, non_blocking=True)
        labels = batch.labels.to(self.device, non_blocking=True)
        frames = self.device_transform(frames, True)
        targets: Optional[torch.Tensor] = None
        if self.mixup is not None:
            frames, targets = self.mixup(frames, labels)
        loss, logits = self.step_fn.backward(frames, labels, targets)
        return loss, logits, labels

    def _note_nonfinite(self, loss: torch.Tensor) -> None:
        # a device flag per micro-batch; read only when a sync reports a non-finite loss
        self._window_flags.append((self.progress.epoch, self.progress.step_in_epoch, ~torch.isfinite(loss)))

    # --- services for hooks ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The base LR (before group multipliers) of the last step."""
        return self._last_lr

    def sync_metrics(self) -> Optional[dict[str, Any]]:
        """Sync the meters over the ranks (every rank calls this at the same point), stop with
        :class:`NonFiniteLossError` if a loss since the last sync was NaN or inf, and hand the
        window to ``stats_listeners``. None (and no collective) when no step ran since the last sync."""
        if not self._unsynced_steps:
            return None
        self._unsynced_steps = 0
        stats = self.meter.sync()
        flags, self._window_flags = self._window_flags, []
        if stats["has_nonfinite"]:
            bad = torch.stack([f for _, _, f in flags]).cpu() if flags else torch.zeros(0, dtype=torch.bool)
            # this rank's first bad step; another rank's when this one saw none (the window's first)
            epoch, step, _ = flags[int(bad.nonzero()[0])] if bad.any() else flags[0]
            raise NonFiniteLossError(
                f"training: the loss became NaN or inf at epoch {epoch + 1} (1-based), iteration {step + 1} of "
                f"{self.steps_per_epoch} (global step {epoch * self.steps_per_epoch + step + 1}); lower "
                "SOLVER.BASE_LR, set SOLVER.CLIP_GRAD_NORM, or use TRAIN.AMP_DTYPE bf16 instead of fp16")
        for listener in self.stats_listeners:
            listener(stats)
        return stats

    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)()


def run_evaluation(model: nn.Module, loader: Iterable, *, device: torch.device,
                   device_transform: Callable[[torch.Tensor, bool], torch.Tensor],
                   amp_dtype: Optional[torch.dtype]) -> dict[str, float]:
    """Single-view evaluation of ``loader`` on every rank (no collective per batch); returns
    the result synced over the ranks (see :class:`~stvit_video.engine.meters.EvalMeter`).

    It runs the bare model inside any DDP / torch.compile wrapper (in either order): ranks may
    have a different number of batches, and DDP's forward would wait for the others."""
    meter = EvalMeter(device=device)
    bare = ckpt.unwrap_model(model)
    was_training = bare.training
    bare.eval()
    with torch.inference_mode(), autocast_or_fp32(device.type, amp_dtype):
        for batch in loader:
            frames = device_transform(batch.frames.to(device, non_blocking=True), False)
            labels = batch.labels.to(device, non_blocking=True)
            meter.update(bare(frames).float(), labels)
    bare.train(was_training)
    return meter.sync()

