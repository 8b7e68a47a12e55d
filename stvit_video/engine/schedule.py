"""Learning-rate schedules: linear warm-up and cosine decay, set before every optimizer step.

A schedule is a pure function of the position in training, the fractional epoch
``e = epoch + fraction`` (``fraction`` in [0, 1): how far into its epoch the step is), so the
LR of a step depends only on where it is, and a run resumed mid-epoch (even with another batch
size, see :mod:`stvit_video.engine.train_loop`) continues on the same curve. Two policies
(``SOLVER.LR_POLICY``):

``mmcv_cosine`` (default; the official Video Swin recipe: mmcv's ``CosineAnnealing`` with
``warmup='linear', warmup_by_epoch=True``)::

    cosine(e) = end + (base - end) * (1 + cos(pi * floor(e) / max_epochs)) / 2
    lr(e)     = cosine(e) * (1 - (1 - e / warmup) * (1 - start_factor))   for e < warmup
              = cosine(e)                                                  otherwise

  The cosine spans all epochs ``[0, max_epochs]`` and steps once per epoch (mmcv's
  ``by_epoch=True``); the warm-up is laid over its start, per iteration, as a factor rising
  linearly from ``start_factor`` to 1.

``warmup_cosine`` (timm / SlowFast style): linear from ``start_factor * base`` to ``base`` over
``[0, warmup]``, then a smooth cosine over ``[warmup, max_epochs]``. It is 10-18% above the
official curve from epoch 10 on for the Video Swin recipe (30 epochs, 2.5 of warm-up)::

    lr
    base ......+---..        (warmup_cosine)
              /      '--.
             /           '-.
    start ..+               '--....... end
            0   warmup            max_epochs     (epochs)

A step's position is the one of its last loader batch (with ``TRAIN.ACCUM_STEPS`` > 1 the LR is
set per loader iteration in mmcv, and the optimizer steps after the last one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LR_POLICIES", "LR_SCALING_RULES", "LRSchedule", "lr_at", "scale_lr", "set_lr"]

LR_POLICIES = ("mmcv_cosine", "warmup_cosine")
LR_SCALING_RULES = ("linear", "sqrt", "none")


def lr_at(epoch_float: float, *, policy: str, base_lr: float, warmup_epochs: float, max_epochs: float,
          warmup_start_factor: float, end_factor: float) -> float:
    """The learning rate at a fractional epoch (see the module docstring for both curves).

    Args:
        epoch_float: position in training, in ``[0, max_epochs]``.
        policy: one of :data:`LR_POLICIES`.
        base_lr: the LR the schedule is scaled to (the peak of ``warmup_cosine``; the cosine's
            start in ``mmcv_cosine``).
        warmup_epochs: length of the linear warm-up in epochs (fractional allowed, 0 = none).
        max_epochs: end of the schedule, ``> warmup_epochs``.
        warmup_start_factor: the LR at epoch 0 is ``warmup_start_factor * base_lr``.
        end_factor: the cosine ends at ``end_factor * base_lr`` (mmcv's ``min_lr`` / base).
    """
    if policy not in LR_POLICIES:
        raise ValueError(f"schedule: unknown LR policy {policy!r}; use one of {', '.join(LR_POLICIES)}")
    if not 0 <= warmup_epochs < max_epochs:
        raise ValueError(f"schedule: need 0 <= warmup_epochs ({warmup_epochs}) < max_epochs ({max_epochs})")
    if not 0 <= epoch_float <= max_epochs:
        raise ValueError(f"schedule: epoch {epoch_float} outside [0, max_epochs = {max_epochs}]")
    end = end_factor * base_lr
    if policy == "mmcv_cosine":
        regular = end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * math.floor(epoch_float) / max_epochs))
        if epoch_float < warmup_epochs:
            return regular * (1.0 - (1.0 - epoch_float / warmup_epochs) * (1.0 - warmup_start_factor))
        return regular
    if epoch_float < warmup_epochs:
        start = warmup_start_factor * base_lr
        return start + (base_lr - start) * epoch_float / warmup_epochs
    progress = (epoch_float - warmup_epochs) / (max_epochs - warmup_epochs)
    return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """:func:`lr_at` with its arguments bound: ``schedule(epoch_float)`` -> LR."""

    policy: str
    base_lr: float
    warmup_epochs: float
    max_epochs: float
    warmup_start_factor: float
    end_factor: float

    def __post_init__(self) -> None:
        self(0.0)  # bad arguments fail here, not at the first step

    def __call__(self, epoch_float: float) -> float:
        return lr_at(epoch_float, policy=self.policy, base_lr=self.base_lr, warmup_epochs=self.warmup_epochs,
                     max_epochs=self.max_epochs, warmup_start_factor=self.warmup_start_factor,
                     end_factor=self.end_factor)

    def at(self, epoch: int, fraction: float) -> float:
        """The LR ``fraction`` (in [0, 1)) into 0-based ``epoch``."""
        if not 0 <= fraction < 1:
            raise ValueError(f"schedule: fraction {fraction} of epoch {epoch} outside [0, 1)")
        return self(epoch + fraction)


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
