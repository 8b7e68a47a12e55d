"""The trainer's hooks: logging, bad videos, validation, checkpoints (detectron2's ``hooks.py``).

Each is a :class:`~stvit_video.engine.train_loop.HookBase` the :class:`~stvit_video.engine.train_loop.Trainer`
calls around steps and epochs; :mod:`stvit_video.engine.train_job` builds them from a config.

- :class:`MetricLogger`: synced meters every ``log_period`` steps (the NaN guard), progress,
  ``stats.jsonl``, TensorBoard; a resumed run drops what the killed run logged after its checkpoint.
- :class:`BadVideoMonitor`: decode failures per epoch, all ranks summed; too many stop the run.
- :class:`Validator`: single-view validation, the best metric.
- :class:`Checkpointer`: epoch / mid-epoch checkpoints, ``last.pyth``, ``best.pyth``, every
  rank's RNG state.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import simplejson
import torch

from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine import distributed as dist_utils
from stvit_video.engine.meters import ETA
from stvit_video.engine.train_loop import HookBase
from stvit_video.utils.atomic import atomic_write_text
from stvit_video.utils.errors import DataError

__all__ = ["BadVideoMonitor", "Checkpointer", "MetricLogger", "Validator", "drop_stats_after", "peak_memory_mb"]

logger = logging.getLogger(__name__)


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
