"""Training and evaluation meters that stay on the device until asked.

Per step, :meth:`TrainMeter.update` and :meth:`EvalMeter.update` only queue tensor
operations on the device the logits live on (no ``.item()``, ``.cpu()`` or ``print``), so
they never wait for the GPU. Host-side numbers (batch sizes, timings) are kept as Python
numbers. ``sync()`` packs everything into one float64 vector, sums it over the ranks with
one ``all_reduce`` and reads it back once: call it every ``LOG_PERIOD`` steps (train) or
once at the end (eval), on every rank, in the same order.

Float64 sums hold integer counts exactly up to 2**53, so top-k counts, sample counts and
the loss sums of the ranks add up exactly; with the no-padding
:class:`~stvit_video.datasets.loader.ShardSampler` the evaluation result over R ranks is
the one a single process would compute (up to float summation order in the loss).

Soft targets (MixUp / CutMix, ``labels`` of shape (B, K)): accuracy counts a prediction as
correct when it matches the argmax of the target, so training top-k errors under MixUp are
an indication, not a metric.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from stvit_video.engine.distributed import all_reduce_sum

__all__ = ["ETA", "EvalMeter", "TrainMeter", "format_seconds", "topk_correct"]

ReduceFn = Callable[[torch.Tensor], torch.Tensor]


def _hard_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,) class indices from (B,) indices or (B, K) soft targets (argmax)."""
    if labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"meters: soft targets have {labels.shape[1]} classes, logits {num_classes}")
        return labels.argmax(dim=1)
    if labels.ndim != 1:
        raise ValueError(f"meters: labels must be (B,) indices or (B, K) soft targets, got {tuple(labels.shape)}")
    return labels


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """How many samples have their label among the top-k scores, for each k.

    Args:
        logits: (B, K) scores.
        labels: (B,) int64 class indices, or (B, K) soft targets (their argmax is the label).
        ks: the k values; each is clipped to K (top-5 of 3 classes counts every sample).

    Returns:
        (len(ks),) int64 counts on the logits' device; no host synchronisation.
    """
    if logits.ndim != 2:
        raise ValueError(f"meters: logits must be (B, K), got {tuple(logits.shape)}")
    batch, num_classes = logits.shape
    hard = _hard_labels(labels, num_classes)
    if hard.shape[0] != batch:
        raise ValueError(f"meters: {hard.shape[0]} labels for {batch} logits")
    ks_clipped = [min(k, num_classes) for k in ks]
    if not ks_clipped or min(ks_clipped) < 1:
        raise ValueError(f"meters: top-k values must be >= 1, got {tuple(ks)}")
    top = logits.topk(max(ks_clipped), dim=1).indices  # (B, maxk), best first
    hits = top.eq(hard.unsqueeze(1)).cumsum(dim=1)  # (B, maxk): label within the first j+1
    return torch.stack([hits[:, k - 1].sum() for k in ks_clipped])


def format_seconds(seconds: float) -> str:
    """``"1d 02:03:04"`` / ``"02:03:04"`` for a duration in seconds."""
    if not math.isfinite(seconds):
        return "--:--:--"
    seconds = int(round(max(seconds, 0.0)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


class ETA:
    """Remaining time from the mean step time since :meth:`start`."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self._start = time.perf_counter()
        self._start_step = 0

    def start(self, step: int = 0) -> None:
        """Count from now and ``step`` (the first step of this process; resumes start later)."""
        self._start, self._start_step = time.perf_counter(), step

    def seconds(self, step: int) -> float:
        """Estimated seconds left after ``step`` steps are done (``inf`` before the first)."""
        done = step - self._start_step
        if done <= 0:
            return math.inf
        return (time.perf_counter() - self._start) / done * max(self.total_steps - step, 0)

    def __call__(self, step: int) -> str:
        return format_seconds(self.seconds(step))


class TrainMeter:
    """Loss, top-k error, throughput and a non-finite flag over a logging window and an epoch.

    Per step: :meth:`update` (device ops only). Every ``LOG_PERIOD`` steps, on every rank:
    :meth:`sync`, which returns the window's statistics summed over the ranks and adds them
    to the epoch's. :meth:`reset` at the start of each epoch.

    A step whose loss is NaN or inf counts in ``nonfinite_steps`` and is left out of the
    loss mean (so one bad step does not hide the others); the NaN guard reads
    ``has_nonfinite`` from the synced result.
    """

    def __init__(self, *, ks: Sequence[int] = (1, 5), reduce_fn: Optional[ReduceFn] = None,
                 device: torch.device | str = "cpu") -> None:
        """
        Args:
            ks: the top-k errors reported (``top{k}_err``).
            reduce_fn: sums a float64 vector over the ranks in place and returns it; default
                :func:`stvit_video.engine.distributed.all_reduce_sum` (a no-op on one process).
            device: the training device (the sums of a window without steps are made there).
        """
        self.ks = tuple(ks)
        self._reduce = reduce_fn or all_reduce_sum
        self.device = torch.device(device)  # where the sums live when this rank saw no batch
        self.reset()

    def reset(self) -> None:
        """Forget the window and the epoch totals (start of an epoch)."""
        self._reset_window()
        self._epoch = {"loss_sum": 0.0, "loss_samples": 0.0, "samples": 0.0, "nonfinite_steps": 0.0,
                       **{f"correct{k}": 0.0 for k in self.ks}}

    def _reset_window(self) -> None:
        self._device_sums: Optional[torch.Tensor] = None  # [loss_sum, loss_samples, nonfinite, correct_k...]
        self._samples = 0
        self._steps = 0
        self._data_time = 0.0
        self._iter_time = 0.0
        self._window_start = time.perf_counter()

    def update(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, batch_size: int,
               data_time: float, iter_time: float) -> None:
        """Add one step; no host-device synchronisation.

        Args:
            loss: 0-d tensor, the step's mean loss over its ``batch_size`` samples.
            logits: (B, K) scores.
            labels: (B,) class indices or (B, K) soft targets.
            batch_size: B, samples of this step on this rank.
            data_time, iter_time: seconds waiting for the batch and for the whole step.
        """
        if loss.ndim != 0:
            raise ValueError(f"meters: loss must be a 0-d tensor, got shape {tuple(loss.shape)}")
        loss = loss.detach().to(torch.float64)
        finite = torch.isfinite(loss)
        # where() keeps a NaN out of the sum without a host-side branch
        step = torch.cat([
            torch.stack([torch.where(finite, loss, 0.0) * batch_size, finite.to(torch.float64) * batch_size,
                         (~finite).to(torch.float64)]),
            topk_correct(logits.detach(), labels.detach(), self.ks).to(torch.float64),
        ])
        self._device_sums = step if self._device_sums is None else self._device_sums + step
        self._samples += batch_size
        self._steps += 1
        self._data_time += data_time
        self._iter_time += iter_time

    def sync(self) -> dict[str, float | bool]:
        """Sum the window over the ranks (every rank calls this), start a new window.

        Returns:
            ``loss`` (mean over the window's samples with a finite loss; NaN when none),
            ``top{k}_err`` (percent), ``samples`` (all ranks), ``steps`` (per rank),
            ``data_time`` and ``iter_time`` (mean seconds per step, over steps and ranks),
            ``data_share`` (data wait / step time), ``samples_per_s`` (all ranks, wall time
            since the previous sync on this rank), ``nonfinite_steps`` (all ranks),
            ``has_nonfinite``, and the epoch so far: ``epoch_loss``, ``epoch_top{k}_err``,
            ``epoch_samples``.
        """
        n = 3 + len(self.ks)
        if self._device_sums is None:
            device_sums = torch.zeros(n, dtype=torch.float64, device=self.device)
        else:
            device_sums = self._device_sums
        host = torch.tensor([self._samples, self._steps, self._data_time, self._iter_time], dtype=torch.float64)
        packed = self._reduce(torch.cat([device_sums, host.to(device_sums.device)]))
        values = packed.tolist()  # the one host-device synchronisation of the window
        loss_sum, loss_samples, nonfinite = values[:3]
        correct = dict(zip(self.ks, values[3:n]))
        samples, steps, data_time, iter_time = values[n:]
        wall = time.perf_counter() - self._window_start

        epoch = self._epoch
        epoch["loss_sum"] += loss_sum
        epoch["loss_samples"] += loss_samples
        epoch["samples"] += samples
        epoch["nonfinite_steps"] += nonfinite
        for k in self.ks:
            epoch[f"correct{k}"] += correct[k]

        out: dict[str, float | bool] = {
            "loss": loss_sum / loss_samples if loss_samples else math.nan,
            **{f"top{k}_err": _error(correct[k], samples) for k in self.ks},
            "samples": samples,
            "steps": self._steps,
            "data_time": data_time / steps if steps else math.nan,
            "iter_time": iter_time / steps if steps else math.nan,
            "data_share": data_time / iter_time if iter_time > 0 else math.nan,
            "samples_per_s": samples / wall if wall > 0 else math.nan,
            "nonfinite_steps": nonfinite,
            "has_nonfinite": nonfinite > 0,
            "epoch_loss": epoch["loss_sum"] / epoch["loss_samples"] if epoch["loss_samples"] else math.nan,
            **{f"epoch_top{k}_err": _error(epoch[f"correct{k}"], epoch["samples"]) for k in self.ks},
            "epoch_samples": epoch["samples"],
        }
        self._reset_window()
        return out


def _error(correct: float, count: float) -> float:
    return 100.0 * (1.0 - correct / count) if count else math.nan


class EvalMeter:
    """Single-view validation: loss sum, top-k correct and sample count, exact across ranks.

    Per batch: :meth:`update` (device ops only). At the end, on every rank: :meth:`sync`,
    then :meth:`result` (the same on every rank).
    """

    def __init__(self, *, ks: Sequence[int] = (1, 5), reduce_fn: Optional[ReduceFn] = None,
                 device: torch.device | str = "cpu") -> None:
        self.ks = tuple(ks)
        self._reduce = reduce_fn or all_reduce_sum
        self.device = torch.device(device)  # where the sums live when this rank saw no batch
        self.reset()

    def reset(self) -> None:
        self._device_sums: Optional[torch.Tensor] = None  # [loss_sum, correct_k...]
        self._count = 0
        self._synced: Optional[list[float]] = None

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: Optional[torch.Tensor] = None) -> None:
        """Add one batch.

        Args:
            logits: (B, K) scores.
            labels: (B,) class indices.
            loss: 0-d mean loss of the batch; default: cross-entropy of ``logits`` (in float64).
        """
        logits, labels = logits.detach(), labels.detach()
        batch = logits.shape[0]
        if loss is None:
            # float64: per-sample losses do not depend on how the items were batched or sharded
            loss_sum = F.cross_entropy(logits.to(torch.float64), labels, reduction="sum")
        else:
            loss_sum = loss.detach().to(torch.float64) * batch
        step = torch.cat([loss_sum.reshape(1), topk_correct(logits, labels, self.ks).to(torch.float64)])
        self._device_sums = step if self._device_sums is None else self._device_sums + step
        self._count += batch
        self._synced = None

    def sync(self) -> dict[str, float]:
        """Sum over the ranks (every rank calls this, once per evaluation) and return :meth:`result`."""
        sums = (self._device_sums if self._device_sums is not None
                else torch.zeros(1 + len(self.ks), dtype=torch.float64, device=self.device))
        packed = torch.cat([sums, torch.tensor([float(self._count)], dtype=torch.float64, device=sums.device)])
        self._synced = self._reduce(packed).tolist()
        return self.result()

    def result(self) -> dict[str, float]:
        """``top{k}_acc`` (percent), ``loss`` (mean per sample) and ``count``, over all ranks."""
        if self._synced is None:
            raise RuntimeError("meters: EvalMeter.result() before sync(); call sync() on every rank first")
        loss_sum, *correct, count = self._synced
        out = {f"top{k}_acc": 100.0 * c / count if count else math.nan for k, c in zip(self.ks, correct)}
        out["loss"] = loss_sum / count if count else math.nan
        out["count"] = count
        return out
