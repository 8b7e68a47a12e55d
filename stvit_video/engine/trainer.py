"""The training loop: :class:`Trainer` runs epochs of optimizer steps; hooks do the rest.

The loop knows nothing of configs. It owns the hot path (device transfer, device-side
normalisation, MixUp, autocast, gradient accumulation, clipping, the optimizer step, the LR
schedule) and calls hooks around it, as detectron2's ``TrainerBase`` does::

    before_train -> [before_epoch -> (step -> after_step) x N -> after_epoch] x E -> after_train

Hooks (this module): :class:`MetricLogger` (synced meters every ``log_period`` steps, the NaN
guard, progress, ``stats.jsonl``, TensorBoard), :class:`BadVideoMonitor` (decode failures per
epoch), :class:`Validator` (single-view validation, best metric), :class:`Checkpointer`
(epoch / iteration checkpoints, ``last.pyth``, ``best.pyth``). :mod:`stvit_video.engine.training`
builds all of it from a config.

Progress is counted in samples (dataset items, all ranks together) within an epoch: a step
takes ``accum_steps`` loader batches of ``items_per_batch`` items, and an epoch runs steps while
a whole step still fits in its ``items_per_epoch`` positions (the last incomplete step is not
loaded). The LR of a step is the schedule at ``epoch + fraction``, the fraction of the epoch's
steps done before its last loader batch. Because the position is a sample count, a run resumed
mid-epoch with another batch, ``accum_steps`` or number of ranks continues at the same sample
with the LR of that position (see :mod:`stvit_video.engine.training`).
Hot-path rule: no host-device synchronisation per step; values are read every ``log_period``
steps, when the meters are synced across ranks.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import simplejson
import torch
import torch.nn.functional as F
from torch import nn

from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.meters import ETA, EvalMeter, TrainMeter
from stvit_video.engine.schedule import LRSchedule, set_lr
from stvit_video.utils.atomic import atomic_write_text
from stvit_video.utils.errors import DataError, TrainingError

__all__ = ["BadVideoMonitor", "Checkpointer", "HookBase", "MetricLogger", "NonFiniteLossError", "TrainProgress",
           "Trainer", "Validator", "drop_stats_after", "soft_target_cross_entropy"]

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


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft targets: (B, K) logits, (B, K) rows summing to 1."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


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
        self.label_smoothing = label_smoothing
        self.device, self.max_epochs, self.accum_steps = device, max_epochs, accum_steps
        self.clip_grad_norm, self.amp_dtype, self.scaler = clip_grad_norm, amp_dtype, scaler
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
        self._optimizer_step()

    def _forward_backward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames = batch.frames.to(self.device, non_blocking=True)
        labels = batch.labels.to(self.device, non_blocking=True)
        frames = self.device_transform(frames, True)
        targets: Optional[torch.Tensor] = None
        if self.mixup is not None:
            frames, targets = self.mixup(frames, labels)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            logits = self.model(frames)
        logits = logits.float()
        if targets is not None:
            loss = soft_target_cross_entropy(logits, targets)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        scaled = loss / self.accum_steps
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return loss, logits, labels

    def _optimizer_step(self) -> None:
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


# ------------------------------------------------------------------------------------------------ #
# Hooks
# ------------------------------------------------------------------------------------------------ #
class MetricLogger(HookBase):
    """Every ``log_period`` steps and at each epoch end: sync the meters (NaN guard), log a line
    or advance a progress bar, append to ``stats.jsonl`` and TensorBoard (main rank only).

    A resumed run first drops what the killed run logged after its checkpoint (the rows of
    ``stats.jsonl`` past ``resumed_at``, and TensorBoard's events through ``purge_step``), so the
    replayed steps are not logged twice.

    Args:
        output_dir: where ``stats.jsonl`` (and ``tensorboard/``) go; None = no files.
        is_main: this rank writes and prints.
        tensorboard: write TensorBoard scalars.
        progress_bar: a tqdm bar per epoch (default: when stdout is a terminal).
        resumed_at: the global step of the checkpoint this run resumed from, or None.
    """

    def __init__(self, *, output_dir: Optional[Path], is_main: bool, tensorboard: bool = False,
                 progress_bar: Optional[bool] = None, resumed_at: Optional[int] = None) -> None:
        self.output_dir, self.is_main = output_dir, is_main
        self.tensorboard = tensorboard
        self.resumed_at = resumed_at
        self.progress_bar = sys.stdout.isatty() if progress_bar is None else progress_bar
        self._writer = None
        self._bar = None
        self._eta: Optional[ETA] = None

    def before_train(self) -> None:
        t = self.trainer
        t.stats_listeners.append(self.record)  # windows synced by other hooks are logged too
        total = t.max_epochs * t.steps_per_epoch
        self._eta = ETA(total)
        self._eta.start(t.progress.global_step)
        if self.is_main and self.output_dir is not None and self.resumed_at is not None:
            dropped = drop_stats_after(self.output_dir / "stats.jsonl", self.resumed_at)
            if dropped:
                logger.info("stats.jsonl: %d rows logged after global step %d by the interrupted run are dropped "
                            "(those steps run again)", dropped, self.resumed_at)
        if self.is_main and self.tensorboard and self.output_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if self.resumed_at is None else self.resumed_at + 1
            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=purge)

    def before_epoch(self) -> None:
        t = self.trainer
        if self.is_main and self.progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=t.steps_per_epoch, initial=t.progress.step_in_epoch,
                             desc=f"epoch {t.progress.epoch + 1}/{t.max_epochs}", dynamic_ncols=True, leave=True)

    def after_step(self) -> None:
        t = self.trainer
        if self._bar is not None:
            self._bar.update(1)
        if t.progress.global_step % t.log_period == 0 or t.epoch_done:
            t.sync_metrics()

    def record(self, stats: dict[str, Any]) -> None:
        """Write one synced window (main rank): log line / bar postfix, stats.jsonl, TensorBoard."""
        if not self.is_main:
            return
        t = self.trainer
        p = t.progress
        row = {
            "epoch": p.epoch + 1,
            "iter": p.step_in_epoch, "iters_per_epoch": t.steps_per_epoch, "global_step": p.global_step,
            "loss": stats["loss"], "lr": t.lr, "top1_err": stats["top1_err"], "top5_err": stats["top5_err"],
            "data_time": stats["data_time"], "iter_time": stats["iter_time"], "data_share": stats["data_share"],
            "samples_per_s": stats["samples_per_s"], "peak_mem_mb": peak_memory_mb(t.device),
            "eta": self._eta(p.global_step) if self._eta else "",
        }
        self.write_stats({"mode": "train", **row})
        text = (f"epoch {row['epoch']}/{t.max_epochs} iter {row['iter']}/{t.steps_per_epoch} "
                f"loss {row['loss']:.4f} top1_err {row['top1_err']:.2f} lr {row['lr']:.3g} "
                f"data {row['data_time']:.3f}s iter {row['iter_time']:.3f}s eta {row['eta']}")
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {row['loss']:.4f} lr {row['lr']:.3g}")
        else:
            logger.info(text)
        if self._writer is not None:
            for key in ("loss", "lr", "top1_err", "top5_err", "data_time", "iter_time"):
                self._writer.add_scalar(f"train/{key}", row[key], p.global_step)

    def write_stats(self, row: dict[str, Any]) -> None:
        """Append one JSON line to ``stats.jsonl`` (main rank; NaN written as null)."""
        if self.is_main and self.output_dir is not None:
            with open(self.output_dir / "stats.jsonl", "a", encoding="utf-8") as f:
                f.write(simplejson.dumps(row, ignore_nan=True) + "\n")

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    def after_epoch(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def after_train(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()


class BadVideoMonitor(HookBase):
    """Counts videos that failed to decode in each epoch (all ranks summed) and stops the run
    when more than ``max_fraction`` of the data set failed.

    Args:
        counter_factory: builds a fresh :class:`~stvit_video.datasets.bad_videos.BadVideoCounter`.
        num_videos: videos in the training list (the denominator).
        max_fraction: ``DATA.MAX_BAD_VIDEO_FRACTION``.
    """

    def __init__(self, *, counter_factory: Callable[[], Any], num_videos: int, max_fraction: float) -> None:
        self.counter_factory, self.num_videos, self.max_fraction = counter_factory, num_videos, max_fraction
        self.counter = counter_factory()

    def before_epoch(self) -> None:
        self.counter = self.counter_factory()

    def after_step(self) -> None:
        for batch in self.trainer.batch_log:
            if batch.bad_videos.numel():  # a CPU tensor: no device sync
                self.counter.update(batch)

    def after_epoch(self) -> None:
        states = dist_utils.all_gather_object(self.counter.state())
        total = self.counter_factory()
        total.merge(states)
        epoch = self.trainer.progress.epoch
        if total.count == 0:
            return
        fraction = total.count / self.num_videos
        logger.warning("epoch %d: %d videos failed to decode this epoch (%.1f%% of %d): %s", epoch, total.count,
                       100 * fraction, self.num_videos, total.summary())
        if fraction > self.max_fraction:
            raise DataError(
                f"training: {total.count} of {self.num_videos} videos ({100 * fraction:.1f}%) failed to decode in "
                f"epoch {epoch}, more than DATA.MAX_BAD_VIDEO_FRACTION = {self.max_fraction}; fix the data (e.g. "
                f"python -m data_prep verify) or raise the limit. First ones: {', '.join(total.paths()[:5])}")


class Validator(HookBase):
    """Single-view validation every ``period`` epochs and after the last; tracks the best top-1.

    Args:
        evaluate: runs the validation on every rank and returns the synced result
            (``top1_acc``, ``top5_acc``, ``loss``, ``count``).
        period: ``TRAIN.EVAL_PERIOD``.
        metric_logger: where the results go (stats.jsonl, TensorBoard), or None.
    """

    def __init__(self, *, evaluate: Callable[[], dict[str, float]], period: int,
                 metric_logger: Optional[MetricLogger] = None) -> None:
        self.evaluate, self.period, self.metric_logger = evaluate, period, metric_logger
        self.last: Optional[dict[str, float]] = None
        self.improved = False

    def after_epoch(self) -> None:
        t = self.trainer
        epoch = t.progress.epoch  # completed epochs
        self.improved = False
        if epoch % self.period and epoch != t.max_epochs:
            return
        result = self.evaluate()
        self.last = result
        best = t.progress.best_metric
        self.improved = best is None or result["top1_acc"] > best
        if self.improved:
            t.progress.best_metric = result["top1_acc"]
        logger.info("epoch %d/%d validation (single view, %d clips): top-1 %.2f%%, top-5 %.2f%%, loss %.4f%s",
                    epoch, t.max_epochs, result["count"], result["top1_acc"], result["top5_acc"], result["loss"],
                    " (best so far)" if self.improved else f" (best {t.progress.best_metric:.2f}%)")
        if self.metric_logger is not None:
            self.metric_logger.write_stats({"mode": "val", "epoch": epoch, "global_step": t.progress.global_step,
                                            **result, "best_top1_acc": t.progress.best_metric})
            self.metric_logger.scalar("val/top1_acc", result["top1_acc"], t.progress.global_step)
            self.metric_logger.scalar("val/loss", result["loss"], t.progress.global_step)


class Checkpointer(HookBase):
    """Saves at every ``period`` epochs, the last epoch and a new best (after the Validator ran),
    and every ``period_iters`` steps inside an epoch. Only the main rank writes; every rank
    syncs the meters first, so a NaN run never overwrites a good checkpoint.

    Every rank's RNG state is gathered into the checkpoint (``rng_ranks``), so each rank of a
    resumed run continues its own dropout / drop-path draws exactly.

    Args:
        folder: ``OUTPUT_DIR/checkpoints``.
        state_fn: ``(rng_ranks) -> checkpoint dict`` of the current progress (main rank).
        is_main: this rank writes.
        period, period_iters: ``TRAIN.CHECKPOINT_PERIOD`` (epochs), ``TRAIN.CHECKPOINT_PERIOD_ITERS`` (0 = off).
        validator: read for ``improved`` (best.pyth).
        timeout_s: how long the other ranks wait for the main rank's write (``DIST.TIMEOUT_S``);
            a write that takes over half of it is logged as a warning.
    """

    def __init__(self, *, folder: Path, state_fn: Callable[[list[Any]], dict[str, Any]], is_main: bool,
                 period: int, period_iters: int = 0, validator: Optional[Validator] = None,
                 timeout_s: Optional[float] = None) -> None:
        self.folder, self.state_fn, self.is_main = folder, state_fn, is_main
        self.period, self.period_iters, self.validator = period, period_iters, validator
        self.timeout_s = timeout_s
        self.saved: list[Path] = []

    def after_step(self) -> None:
        t = self.trainer
        p = t.progress
        if self.period_iters and p.step_in_epoch % self.period_iters == 0 and not t.epoch_done:
            self._save(is_best=False)

    def after_epoch(self) -> None:
        t = self.trainer
        epoch = t.progress.epoch
        improved = self.validator is not None and self.validator.improved
        if epoch % self.period == 0 or epoch == t.max_epochs or improved:
            self._save(is_best=improved)

    def _save(self, *, is_best: bool) -> None:
        self.trainer.sync_metrics()  # the NaN guard runs before anything is written
        rng_ranks = dist_utils.all_gather_object(ckpt.capture_rng_state())
        if self.is_main:
            with dist_utils.main_rank_work("writing a checkpoint", self.timeout_s):
                path = ckpt.save_training_checkpoint(self.folder, self.state_fn(rng_ranks), is_best=is_best)
            self.saved.append(path)
            logger.info("checkpoint saved: %s%s", path, " (best)" if is_best else "")
        dist_utils.barrier()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on CUDA, else the peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return math.nan


def drop_stats_after(path: Path, global_step: int) -> int:
    """Rewrite ``stats.jsonl`` (atomically) without the rows logged after ``global_step``;
    returns how many were dropped. Rows without a ``global_step`` are kept."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = simplejson.loads(line).get("global_step")
        except (simplejson.JSONDecodeError, AttributeError):  # a line cut by the kill: it cannot be placed
            dropped += 1
            continue
        if isinstance(step, int) and step > global_step:
            dropped += 1
        else:
            kept.append(line + "\n")
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


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
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        for batch in loader:
            frames = device_transform(batch.frames.to(device, non_blocking=True), False)
            labels = batch.labels.to(device, non_blocking=True)
            meter.update(bare(frames).float(), labels)
    bare.train(was_training)
    return meter.sync()

