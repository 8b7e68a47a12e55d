"""LR schedules (the official mmcv cosine and timm's warm-up cosine), LR scaling, group multipliers."""
import math

import pytest
import torch

from stvit_video.engine.optimizer import build_param_groups
from stvit_video.engine.schedule import LRSchedule, lr_at, scale_lr, set_lr

BASE = 1e-3
KW = dict(base_lr=BASE, warmup_epochs=2.5, max_epochs=30, warmup_start_factor=0.01, end_factor=0.01)
# the Video Swin recipe: lr 1e-3, 30 epochs, 2.5 of linear warm-up from 0.1 x, cosine to min_lr 0
VIDEO_SWIN = dict(base_lr=BASE, warmup_epochs=2.5, max_epochs=30, warmup_start_factor=0.1, end_factor=0.0)


def _mmcv_reference(iters_per_epoch: int) -> list[float]:
    """mmcv's LrUpdaterHook as the Video Swin configs drive it (CosineAnnealing, by_epoch=True,
    warmup='linear', warmup_by_epoch=True, warmup_iters=2.5, warmup_ratio=0.1, min_lr=0), stepped
    through its hooks: the regular LR is set before each epoch, the warm-up LR before each iteration."""
    warmup_iters = 2.5 * iters_per_epoch
    lrs = []
    for epoch in range(30):
        regular = 0.0 + 0.5 * (BASE - 0.0) * (math.cos(math.pi * epoch / 30) + 1)  # before_train_epoch
        lr = regular
        for it in range(iters_per_epoch):
            cur = epoch * iters_per_epoch + it  # before_train_iter: runner.iter
            if cur < warmup_iters:
                lr = regular * (1 - (1 - cur / warmup_iters) * (1 - 0.1))
            elif cur == warmup_iters:
                lr = regular
            lrs.append(lr)
    return lrs


def test_mmcv_cosine_is_the_official_video_swin_curve_at_every_iteration():
    schedule = LRSchedule(policy="mmcv_cosine", **VIDEO_SWIN)
    iters = 40
    ours = [schedule.at(e, i / iters) for e in range(30) for i in range(iters)]
    assert ours == pytest.approx(_mmcv_reference(iters), rel=1e-12, abs=1e-18)


def test_mmcv_cosine_closed_form_at_the_protocol_points():
    lr = LRSchedule(policy="mmcv_cosine", **VIDEO_SWIN)
    assert lr(0.0) == pytest.approx(0.1 * BASE)  # warm-up start: 0.1 x the cosine at epoch 0
    # half-way through the warm-up: the factor is 0.55 of the cosine of epoch 1
    assert lr(1.25) == pytest.approx(0.55 * 0.5 * (1 + math.cos(math.pi / 30)) * BASE)
    assert lr(2.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 30)) * BASE)  # 0.9891 x base
    assert lr(10.0) == pytest.approx(0.75 * BASE)  # cos(pi / 3) = 0.5
    assert lr(10.9) == lr(10.0)  # the cosine steps once per epoch
    assert lr(20.0) == pytest.approx(0.25 * BASE)
    assert lr(30.0) == pytest.approx(0.0, abs=1e-18)
    # timm's curve (cosine over [2.5, 30]) is 10-18% higher from epoch 10 on
    timm = LRSchedule(policy="warmup_cosine", **VIDEO_SWIN)
    for epoch in (10, 15, 20):
        assert 1.10 < timm(float(epoch)) / lr(float(epoch)) < 1.19


def test_warmup_cosine_is_linear_from_the_start_factor_to_the_base_lr():
    lr = LRSchedule(policy="warmup_cosine", **KW)
    assert lr(0.0) == pytest.approx(0.01 * BASE)
    # halfway through the (fractional) warm-up: halfway between start and base
    assert lr(1.25) == pytest.approx(0.01 * BASE + 0.5 * 0.99 * BASE)
    assert lr(2.5) == pytest.approx(BASE)
    assert lr(2.5 - 1e-9) == pytest.approx(BASE)
    # the middle of the cosine phase is the mean of base and end, the end is the end factor
    assert lr(2.5 + 27.5 / 2) == pytest.approx((BASE + 0.01 * BASE) / 2)
    assert lr(30.0) == pytest.approx(0.01 * BASE, rel=1e-12)


def test_no_warmup_starts_at_the_cosine_and_bad_positions_raise():
    assert lr_at(0.0, policy="warmup_cosine", **{**KW, "warmup_epochs": 0}) == pytest.approx(BASE)
    assert lr_at(0.0, policy="mmcv_cosine", **{**KW, "warmup_epochs": 0}) == pytest.approx(BASE)
    with pytest.raises(ValueError, match="outside"):
        lr_at(30.5, policy="mmcv_cosine", **KW)
    with pytest.raises(ValueError, match="warmup_epochs"):
        lr_at(1.0, policy="mmcv_cosine", **{**KW, "warmup_epochs": 30})
    with pytest.raises(ValueError, match="unknown LR policy 'step'"):
        LRSchedule(policy="step", **KW)
    with pytest.raises(ValueError, match="fraction 1.0"):
        LRSchedule(policy="mmcv_cosine", **KW).at(3, 1.0)


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
