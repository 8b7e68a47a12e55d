"""Warm-up + cosine LR per iteration, LR scaling, per-group multipliers."""
import math

import pytest
import torch

from stvit_video.engine.optimizer import build_param_groups
from stvit_video.engine.schedule import WarmupCosine, epoch_progress, scale_lr, set_lr, warmup_cosine_lr

BASE = 1e-3
KW = dict(base_lr=BASE, warmup_epochs=2.5, max_epochs=30, warmup_start_factor=0.01, end_factor=0.01)


def test_warmup_is_linear_from_the_start_factor_to_the_base_lr():
    assert warmup_cosine_lr(0.0, **KW) == pytest.approx(0.01 * BASE)
    # halfway through the (fractional) warm-up: halfway between start and base
    assert warmup_cosine_lr(1.25, **KW) == pytest.approx(0.01 * BASE + 0.5 * 0.99 * BASE)
    assert warmup_cosine_lr(2.5, **KW) == pytest.approx(BASE)
    assert warmup_cosine_lr(2.5 - 1e-9, **KW) == pytest.approx(BASE)


def test_cosine_spans_warmup_to_max_and_ends_at_the_end_factor():
    # the middle of the cosine phase is the mean of base and end
    assert warmup_cosine_lr(2.5 + 27.5 / 2, **KW) == pytest.approx((BASE + 0.01 * BASE) / 2)
    assert warmup_cosine_lr(30.0, **KW) == pytest.approx(0.01 * BASE, rel=1e-12)


def test_per_iteration_schedule_rises_then_decreases_to_end_at_the_last_iteration():
    sched = WarmupCosine(**KW)
    iters = 40
    lrs = [sched.at_iter(e, i, iters) for e in range(30) for i in range(iters)]
    warm = int(2.5 * iters)  # iteration 100 is epoch 2.5 exactly
    assert lrs[0] == pytest.approx(0.01 * BASE)
    assert lrs[warm] == pytest.approx(BASE)
    assert all(a < b for a, b in zip(lrs[:warm], lrs[1:warm + 1]))
    assert all(a > b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    # the last iteration runs at epoch 30 - 1/40: above the end by (pi/2)^2/(40*27.5)^2 of (base - end)
    end = 0.01 * BASE
    assert lrs[-1] - end == pytest.approx((BASE - end) * (math.pi / 2) ** 2 / (iters * 27.5) ** 2, rel=1e-3)
    assert abs(lrs[-1] - end) < 3e-6 * BASE


def test_no_warmup_starts_at_base_and_bad_positions_raise():
    assert warmup_cosine_lr(0.0, **{**KW, "warmup_epochs": 0}) == pytest.approx(BASE)
    with pytest.raises(ValueError, match="outside"):
        warmup_cosine_lr(30.5, **KW)
    with pytest.raises(ValueError, match="warmup_epochs"):
        warmup_cosine_lr(1.0, **{**KW, "warmup_epochs": 30})
    with pytest.raises(ValueError, match="iteration 40"):
        epoch_progress(3, 40, 40)
    assert epoch_progress(3, 10, 40) == 3.25


def test_scale_lr_rules():
    assert scale_lr(1e-3, global_batch=16, reference_batch=64, rule="linear") == pytest.approx(2.5e-4)
    assert scale_lr(1e-3, global_batch=256, reference_batch=64, rule="sqrt") == pytest.approx(2e-3)
    assert scale_lr(1e-3, global_batch=16, reference_batch=64, rule="none") == 1e-3
    with pytest.raises(ValueError, match="'cubic'.*linear"):
        scale_lr(1e-3, global_batch=16, reference_batch=64, rule="cubic")


def test_set_lr_applies_each_group_multiplier():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    model.add_module("head", torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(build_param_groups(model, weight_decay=0.05, backbone_lr_mult=0.1), lr=1.0)
    set_lr(optimizer, 0.5)
    lrs = sorted((g["role"], g["lr"]) for g in optimizer.param_groups)
    assert lrs == [("backbone", 0.05), ("backbone", 0.05), ("head", 0.5), ("head", 0.5)]
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)  # no lr_mult: 1.0
    set_lr(plain, 0.25)
    assert plain.param_groups[0]["lr"] == 0.25
