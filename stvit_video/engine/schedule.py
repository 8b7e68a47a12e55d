"""Learning-rate schedule: linear warm-up then cosine decay, set per iteration.

The schedule is a pure function of the fractional epoch ``epoch + iter / iters_per_epoch``
(``iter`` 0-based, the iteration about to run), as in SlowFast and timm: the LR of a step
depends only on its position, so a run resumed mid-epoch continues on the same curve.

    lr
    base ........+---..
                /       '--.
               /            '-.
    start ....+                '--....... end
              0      warmup             max_epochs     (epochs)

The cosine spans ``[warmup_epochs, max_epochs]`` (timm style) and reaches ``end`` at
``epoch_float == max_epochs``; the last iteration runs at ``max_epochs - 1 / iters_per_epoch``,
a relative ``(pi / 2)^2 / (iters_per_epoch * (max_epochs - warmup_epochs))^2`` of
``base - end`` above ``end`` (3e-7 for 100 iterations x 27.5 cosine epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LR_SCALING_RULES", "WarmupCosine", "epoch_progress", "scale_lr", "set_lr",
           "warmup_cosine_lr"]

LR_SCALING_RULES = ("linear", "sqrt", "none")


def warmup_cosine_lr(epoch_float: float, *, base_lr: float, warmup_epochs: float, max_epochs: float,
                     warmup_start_factor: float, end_factor: float) -> float:
    """The learning rate at a fractional epoch.

    Args:
        epoch_float: position in training, ``epoch + iter / iters_per_epoch`` (0-based epoch,
            0-based iteration about to run); in ``[0, max_epochs]``.
        base_lr: the peak LR, reached at ``warmup_epochs``.
        warmup_epochs: length of the linear warm-up in epochs (fractional allowed, 0 = none).
        max_epochs: end of the schedule, ``> warmup_epochs``.
        warmup_start_factor: the LR at epoch 0 is ``warmup_start_factor * base_lr``.
        end_factor: the LR at ``max_epochs`` is ``end_factor * base_lr``.

    Returns:
        ``start + (base - start) * e / warmup`` during warm-up, then
        ``end + (base - end) * (1 + cos(pi * p)) / 2`` with ``p = (e - warmup) / (max - warmup)``.
    """
    if not 0 <= warmup_epochs < max_epochs:
        raise ValueError(f"schedule: need 0 <= warmup_epochs ({warmup_epochs}) < max_epochs ({max_epochs})")
    if not 0 <= epoch_float <= max_epochs:
        raise ValueError(f"schedule: epoch {epoch_float} outside [0, max_epochs = {max_epochs}]")
    if epoch_float < warmup_epochs:
        start = warmup_start_factor * base_lr
        return start + (base_lr - start) * epoch_float / warmup_epochs
    end = end_factor * base_lr
    progress = (epoch_float - warmup_epochs) / (max_epochs - warmup_epochs)
    return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_progress(epoch: int, iter_in_epoch: int, iters_per_epoch: int) -> float:
    """``epoch + iter_in_epoch / iters_per_epoch``: the fractional epoch of a 0-based iteration."""
    if iters_per_epoch < 1 or not 0 <= iter_in_epoch < iters_per_epoch:
        raise ValueError(f"schedule: iteration {iter_in_epoch} outside [0, iters_per_epoch = {iters_per_epoch})")
    return epoch + iter_in_epoch / iters_per_epoch


@dataclass(frozen=True)
class WarmupCosine:
    """:func:`warmup_cosine_lr` with its arguments bound; ``schedule(epoch_float)`` -> LR."""

    base_lr: float
    warmup_epochs: float
    max_epochs: float
    warmup_start_factor: float
    end_factor: float

    def __call__(self, epoch_float: float) -> float:
        return warmup_cosine_lr(epoch_float, base_lr=self.base_lr, warmup_epochs=self.warmup_epochs,
                                max_epochs=self.max_epochs, warmup_start_factor=self.warmup_start_factor,
                                end_factor=self.end_factor)

    def at_iter(self, epoch: int, iter_in_epoch: int, iters_per_epoch: int) -> float:
        """The LR of 0-based iteration ``iter_in_epoch`` of 0-based ``epoch``."""
        return self(epoch_progress(epoch, iter_in_epoch, iters_per_epoch))


def scale_lr(base_lr: float, *, global_batch: int, reference_batch: int, rule: str) -> float:
    """The LR for ``global_batch`` clips per step, given ``base_lr`` tuned for ``reference_batch``.

    Rules: ``"linear"`` (Goyal et al.: ``base * global / reference``), ``"sqrt"``
    (``base * sqrt(global / reference)``, sometimes preferred with AdamW), ``"none"`` (``base``).
    Call it once, where the config is turned into objects, and log the result.
    """
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"schedule: unknown LR scaling rule {rule!r}; use one of {LR_SCALING_RULES}")
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(f"schedule: batch sizes must be >= 1 (global {global_batch}, reference {reference_batch})")
    ratio = global_batch / reference_batch
    return base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's LR to ``lr * group["lr_mult"]`` (1.0 when absent).

    The groups of :func:`stvit_video.engine.optimizer.build_param_groups` carry ``lr_mult``
    (e.g. 0.1 for a pretrained backbone).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
