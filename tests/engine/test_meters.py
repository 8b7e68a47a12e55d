"""Meters: exact top-k counts on hand-made logits, windowed training statistics with a
non-finite flag, exact evaluation sums across two real ranks, timing helpers."""
import math

import pytest
import torch

from stvit_video.engine import meters
from stvit_video.engine.meters import ETA, EvalMeter, TrainMeter, format_seconds, topk_correct

from tests.helpers.two_ranks import NUM_ITEMS, feed_meters, meter_data

# 3 samples, 6 classes: #0 right at top-1, #1 label second (top-5 only), #2 label scored lowest (missed)
LOGITS = torch.tensor([[0.0, 1.0, 5.0, 2.0, 0.5, 0.1],
                       [4.0, 0.0, 1.0, 9.0, 2.0, 3.0],
                       [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
LABELS = torch.tensor([2, 0, 5])


def test_topk_correct_counts_hand_made_cases():
    assert topk_correct(LOGITS, LABELS).tolist() == [1, 2]
    assert topk_correct(LOGITS, LABELS, ks=(1, 2, 6)).tolist() == [1, 2, 3]
    # k larger than the number of classes is clipped: top-5 of 3 classes counts every sample
    # (argmaxes 2, 0, 0 against labels 2, 0, 1: two top-1 hits)
    assert topk_correct(LOGITS[:, :3], torch.tensor([2, 0, 1]), ks=(1, 5)).tolist() == [2, 3]


def test_soft_targets_count_their_argmax():
    soft = torch.zeros(3, 6)
    soft[0, 2], soft[0, 1] = 0.7, 0.3  # a MixUp target: argmax 2
    soft[1, 0], soft[1, 3] = 0.6, 0.4
    soft[2, 5] = 1.0
    assert topk_correct(LOGITS, soft).tolist() == [1, 2]
    with pytest.raises(ValueError, match="soft targets have 4 classes, logits 6"):
        topk_correct(LOGITS, torch.zeros(3, 4))


def test_train_meter_window_and_epoch_statistics_with_a_nan_step():
    meter = TrainMeter()
    meter.update(torch.tensor(2.0), LOGITS[:2], LABELS[:2], 2, data_time=0.1, iter_time=0.5)
    meter.update(torch.tensor(5.0), LOGITS[2:], LABELS[2:], 1, data_time=0.3, iter_time=0.5)
    first = meter.sync()
    assert first["loss"] == pytest.approx((2.0 * 2 + 5.0) / 3)
    assert first["top1_err"] == pytest.approx(100 * 2 / 3) and first["top5_err"] == pytest.approx(100 / 3)
    assert first["samples"] == 3 and first["steps"] == 2 and not first["has_nonfinite"]
    assert first["data_time"] == pytest.approx(0.2) and first["iter_time"] == pytest.approx(0.5)
    assert first["data_share"] == pytest.approx(0.4)
    # second window: a NaN step is flagged and kept out of the loss mean
    meter.update(torch.tensor(float("nan")), LOGITS[:1], LABELS[:1], 1, data_time=0.0, iter_time=0.1)
    meter.update(torch.tensor(1.0), LOGITS[1:], LABELS[1:], 2, data_time=0.0, iter_time=0.1)
    second = meter.sync()
    assert second["has_nonfinite"] and second["nonfinite_steps"] == 1
    assert second["loss"] == pytest.approx(1.0) and second["samples"] == 3
    assert second["top1_err"] == pytest.approx(100 * 2 / 3)  # #0 hit; #1, #2 miss
    assert second["epoch_loss"] == pytest.approx((4.0 + 5.0 + 2.0) / 5)
    assert second["epoch_samples"] == 6 and second["epoch_top1_err"] == pytest.approx(100 * 4 / 6)
    # an empty window: nothing flagged, no division by zero
    empty = meter.sync()
    assert math.isnan(empty["loss"]) and not empty["has_nonfinite"] and empty["samples"] == 0
    meter.reset()
    assert math.isnan(meter.sync()["epoch_loss"])


def test_train_meter_reduces_one_vector_through_the_given_function():
    calls = []

    def two_identical_ranks(t):
        calls.append(t.dtype)
        return t.mul_(2)

    meter = TrainMeter(reduce_fn=two_identical_ranks)
    meter.update(torch.tensor(2.0), LOGITS, LABELS, 3, data_time=0.1, iter_time=0.2)
    out = meter.sync()
    assert calls == [torch.float64]
    assert out["samples"] == 6 and out["loss"] == pytest.approx(2.0) and out["top1_err"] == pytest.approx(200 / 3)


def test_eval_meter_exact_result_and_result_needs_a_sync():
    meter = EvalMeter()
    meter.update(LOGITS[:2], LABELS[:2])
    meter.update(LOGITS[2:], LABELS[2:], loss=torch.tensor(3.0))
    with pytest.raises(RuntimeError, match="before sync"):
        meter.result()
    out = meter.sync()
    ce = torch.nn.functional.cross_entropy(LOGITS[:2], LABELS[:2], reduction="sum").item()
    assert out == pytest.approx({"top1_acc": 100 / 3, "top5_acc": 200 / 3, "loss": (ce + 3.0) / 3, "count": 3})
    assert meter.result() == out


def test_two_ranks_sum_to_the_one_process_result(two_rank_run):
    """Rank shards of 4 and 3 items (ShardSampler layout) give exactly the single-process numbers."""
    steps = meter_data()[2]
    evaluation, train = feed_meters(list(range(NUM_ITEMS)), steps[0] + steps[1])
    single_eval, single_train = evaluation.sync(), train.sync()
    for rank in range(2):
        both = two_rank_run[rank]
        assert both["eval"]["count"] == single_eval["count"] == NUM_ITEMS
        assert both["eval"]["top1_acc"] == single_eval["top1_acc"]
        assert both["eval"]["top5_acc"] == single_eval["top5_acc"]
        assert both["eval"]["loss"] == pytest.approx(single_eval["loss"], rel=1e-12)
        tr = both["train"]
        assert tr["has_nonfinite"] and tr["nonfinite_steps"] == 1  # rank 1's NaN, seen on both ranks
        for key in ("samples", "top1_err", "top5_err", "epoch_samples"):
            assert tr[key] == single_train[key], key
        assert tr["loss"] == pytest.approx(single_train["loss"], rel=1e-12)
        assert tr["iter_time"] == pytest.approx(0.4) and tr["data_share"] == pytest.approx(0.25)


def test_eta_with_a_fake_clock(monkeypatch):
    clock = iter([13.0])
    monkeypatch.setattr(meters.time, "perf_counter", lambda: next(clock))
    eta = ETA(total_steps=100)  # t = 13.0
    clock_after = iter([13.0 + 30.0])
    monkeypatch.setattr(meters.time, "perf_counter", lambda: next(clock_after))
    assert eta.seconds(10) == pytest.approx(3.0 * 90)
    assert format_seconds(93784) == "1d 02:03:04" and format_seconds(61) == "00:01:01"
    assert format_seconds(math.inf) == "--:--:--"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_updates_never_synchronise_with_the_gpu():
    logits, labels, loss = LOGITS.cuda(), LABELS.cuda(), torch.tensor(1.0, device="cuda")
    train, evaluation = TrainMeter(), EvalMeter()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        for _ in range(3):
            train.update(loss, logits, labels, 3, data_time=0.0, iter_time=0.1)
            evaluation.update(logits, labels)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert train.sync()["samples"] == 9 and evaluation.sync()["count"] == 9
