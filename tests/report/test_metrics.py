"""Aggregation, ranking, views curve and class metrics on hand-made logits."""
import numpy as np
import pytest

from stvit_video.report import (
    aggregate, confusion_matrix, headline_metrics, label_ranks, mean_class_accuracy, most_confused_pairs,
    per_class_counts, predictions, select_views, softmax, topk_accuracy, topk_correct, views_curve,
)
from stvit_video.report.metrics import NO_RANK, confused_classes
from tests.helpers.results import curve_case, log_probs

# One video, 2 clips x 1 crop, 3 classes. Sum: [0.6, 0.9, 0.5] -> class 1; max: [0.5, 0.45, 0.45] -> class 0.
SUM_VS_MAX = log_probs([0.5, 0.45, 0.05], [0.1, 0.45, 0.45])[None]


def test_softmax_is_stable_and_normalised():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]], atol=1e-12)
    assert p.dtype == np.float64


def test_sum_and_max_pick_different_hand_computed_winners():
    valid = np.ones((1, 2), bool)
    scores, has_view = aggregate(SUM_VS_MAX, valid, "sum")
    np.testing.assert_allclose(scores, [[0.6, 0.9, 0.5]], atol=1e-6)
    assert predictions(scores, has_view).tolist() == [1]
    scores, has_view = aggregate(SUM_VS_MAX, valid, "max")
    np.testing.assert_allclose(scores, [[0.5, 0.45, 0.45]], atol=1e-6)
    assert predictions(scores, has_view).tolist() == [0]
    assert has_view.tolist() == [True]
    with pytest.raises(ValueError, match="ensemble"):
        aggregate(SUM_VS_MAX, valid, "mean")


@pytest.mark.parametrize("ensemble", ["sum", "max"])
def test_failed_view_is_excluded_even_when_it_holds_garbage(ensemble):
    logits = np.concatenate([log_probs([0.2, 0.7, 0.1]), np.array([[np.nan, 1e9, np.inf]], np.float32),
                             log_probs([0.1, 0.3, 0.6])])[None]  # (1, 3, 3)
    valid = np.array([[True, False, True]])
    scores, has_view = aggregate(logits, valid, ensemble)
    expected = [0.3, 1.0, 0.7] if ensemble == "sum" else [0.2, 0.7, 0.6]
    np.testing.assert_allclose(scores, [expected], atol=1e-6)
    assert np.isfinite(scores).all() and has_view.tolist() == [True]


def test_views_per_video_are_combined_separately():
    logits = np.stack([log_probs([0.9, 0.1], [0.6, 0.4]), log_probs([0.2, 0.8], [0.3, 0.7])])  # (2, 2, 2)
    scores, _ = aggregate(logits, np.ones((2, 2), bool))
    np.testing.assert_allclose(scores, [[1.5, 0.5], [0.5, 1.5]], atol=1e-6)


def test_video_without_a_valid_view_is_wrong_for_every_k():
    logits = np.stack([log_probs([0.9, 0.1], [0.8, 0.2]), log_probs([0.9, 0.1], [0.8, 0.2])])
    valid = np.array([[True, True], [False, False]])
    labels = np.array([0, 0])
    scores, has_view = aggregate(logits, valid)
    assert has_view.tolist() == [True, False]
    assert scores[1].tolist() == [0.0, 0.0]
    assert predictions(scores, has_view).tolist() == [0, -1]
    assert label_ranks(scores, labels, has_view).tolist() == [0, NO_RANK]
    for k in (1, 2, 5):  # k >= K = 2 would otherwise be always right
        assert topk_correct(scores, labels, k, has_view).tolist() == [True, False]
        assert topk_accuracy(scores, labels, k, has_view) == 50.0


def test_ties_rank_the_smaller_class_id_first():
    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    assert label_ranks(scores, np.array([0, 1])).tolist() == [0, 1]
    assert predictions(scores).tolist() == [0, 0]
    assert topk_accuracy(scores, np.array([0, 1]), 1) == 50.0


def test_topk_accuracy_hand_case():
    scores = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25, 0.35, 0.3, 0.1]])
    labels = np.array([0, 0, 2])  # ranks 3, 0, 1
    assert label_ranks(scores, labels).tolist() == [3, 0, 1]
    assert topk_accuracy(scores, labels, 1) == pytest.approx(100 / 3)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(200 / 3)
    assert topk_accuracy(scores, labels, 4) == 100.0


def test_select_views_follows_the_contract():
    # 4 clips x 3 crops: view = clip * 3 + crop; centre crop = 1
    assert select_views(4, 3, 1, 1).tolist() == [7]  # clip floor(0.5 * 4) = 2
    assert select_views(4, 3, 2, 1).tolist() == [4, 10]  # clips 1, 3
    assert select_views(4, 3, 3, 1).tolist() == [1, 7, 10]  # clips 0, 2, 3
    assert select_views(4, 3, 4, 1).tolist() == [1, 4, 7, 10]
    assert select_views(4, 3, 1, 3).tolist() == [6, 7, 8]
    assert select_views(4, 3, 2, 3).tolist() == [3, 4, 5, 9, 10, 11]
    assert select_views(4, 3, 4, 3).tolist() == list(range(12))
    assert select_views(5, 1, 2, 1).tolist() == [1, 3]  # floor(1.25), floor(3.75)
    assert select_views(5, 1, 3, 1).tolist() == [0, 2, 4]
    assert select_views(10, 1, 3, 1).tolist() == [1, 5, 8]  # floor(5/3), floor(5), floor(25/3)
    with pytest.raises(ValueError, match="a clip gives 1 crop .centre. or 3 .left, centre, right., not 2"):
        select_views(1, 2, 1, 1)  # the view grid has 1 or 3 crops per clip
    with pytest.raises(ValueError, match="crops must be 1 or num_crops=3"):
        select_views(4, 3, 1, 2)
    with pytest.raises(ValueError, match=r"clips must be in \[1, 4\]"):
        select_views(4, 3, 5, 1)


def test_views_curve_hand_case():
    r = curve_case()
    curve = views_curve(r.logits, r.valid, r.labels, r.num_clips, r.num_crops)
    # Video 0 (label 0), class-0 vs class-1 sums: 1x1 0.1/0.8, 2x1 1.0/0.6, 3x1 1.1/1.4, 4x1 1.6/1.7,
    # 1x3 1.1/1.4, 2x3 3.0/1.8, 3x3 4.1/3.2, 4x3 5.6/4.1. Video 1 (label 2) is wrong only at 1x1,
    # where its label scores last (top-5 wrong too).
    assert [p.label for p in curve] == ["1x1", "2x1", "3x1", "4x1", "1x3", "2x3", "3x3", "4x3"]
    assert [p.views for p in curve] == [1, 2, 3, 4, 3, 6, 9, 12]
    assert [p.top1 for p in curve] == [0.0, 100.0, 50.0, 50.0, 50.0, 100.0, 100.0, 100.0]
    assert [p.top5 for p in curve] == [50.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0]
    assert [p.unscored for p in curve] == [0] * 8
    h = headline_metrics(r)
    assert (h["top1"], h["top5"], h["one_view_top1"], h["one_view_top5"]) == (100.0, 100.0, 0.0, 50.0)
    assert h["mean_class"] == 100.0 and h["videos"] == 2 and h["unscored"] == 0


def test_views_curve_counts_a_video_whose_selected_views_failed():
    r = curve_case()
    r.valid[0, 7] = False  # only the 1x1 view of video 0 fails
    curve = {p.label: p for p in views_curve(r.logits, r.valid, r.labels, 4, 3)}
    assert curve["1x1"].unscored == 1 and curve["1x1"].top1 == 0.0
    assert curve["4x1"].unscored == 0 and curve["4x1"].top1 == 100.0  # 1.5 vs 0.9 without view 7
    assert curve["1x3"].top1 == 100.0  # views 6, 8: 1.0 vs 0.6


def test_max_ensemble_in_the_views_curve():
    r = curve_case()
    curve = views_curve(r.logits, r.valid, r.labels, 4, 3, ensemble="max")
    # max with view 7 present: video 0 gets 0.8 for class 1 > 0.5 -> wrong whenever view 7 is in
    assert [p.top1 for p in curve] == [0.0, 100.0, 50.0, 50.0, 50.0, 100.0, 50.0, 50.0]


def test_mean_class_accuracy_and_confusion_hand_case():
    # K = 4 (class 3 has no video); labels and top-1 predictions chosen by hand
    labels = np.array([0, 0, 0, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 2, 0])
    scores = np.eye(4)[pred]
    correct = topk_correct(scores, labels, 1)
    assert correct.tolist() == [True, True, False, True, True, False]
    assert topk_accuracy(scores, labels, 1) == pytest.approx(400 / 6)
    # recall: class 0 2/3, class 1 1/1, class 2 1/2 -> mean 13/18; class 3 absent, not averaged
    assert mean_class_accuracy(labels, correct, 4) == pytest.approx(100 * 13 / 18)
    total, right = per_class_counts(labels, correct, 4)
    assert total.tolist() == [3, 1, 2, 0] and right.tolist() == [2, 1, 1, 0]
    cm = confusion_matrix(labels, predictions(scores), 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert most_confused_pairs(cm) == [(0, 1, 1), (2, 0, 1)]  # ties by (true, predicted)
    assert most_confused_pairs(cm, top=1) == [(0, 1, 1)]


def test_confusion_leaves_out_unscored_videos_and_orders_pairs_by_count():
    labels = np.array([0, 1, 1, 1, 2, 2])
    pred = np.array([-1, 2, 2, 0, 1, 2])
    cm = confusion_matrix(labels, pred, 3)
    assert cm.tolist() == [[0, 0, 0], [1, 0, 2], [0, 1, 1]]
    assert most_confused_pairs(cm) == [(1, 2, 2), (1, 0, 1), (2, 1, 1)]


def test_confused_classes_picks_the_busiest_block():
    cm = np.zeros((6, 6), np.int64)
    np.fill_diagonal(cm, 50)  # the diagonal does not count
    cm[4, 1] = 5
    cm[1, 4] = 2
    cm[2, 5] = 1
    assert confused_classes(cm, 2).tolist() == [1, 4]
    assert confused_classes(cm, 3).tolist() == [1, 2, 4]  # 2 and 5 tie on 1: smaller id
    assert confused_classes(cm, 10).tolist() == list(range(6))


@pytest.mark.parametrize("ensemble", ["sum", "max"])
def test_chunking_does_not_change_results(monkeypatch, ensemble):
    from stvit_video.report import metrics
    from tests.helpers.results import random_results

    r = random_results(num_videos=7, num_classes=6)
    whole = aggregate(r.logits, r.valid, ensemble)
    curve = views_curve(r.logits, r.valid, r.labels, 4, 3, ensemble)
    monkeypatch.setattr(metrics, "_CHUNK", 2)  # 7 videos in chunks of 2, 2, 2, 1
    chunked = aggregate(r.logits, r.valid, ensemble)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
    assert views_curve(r.logits, r.valid, r.labels, 4, 3, ensemble) == curve
    # and every point agrees with aggregating its views directly
    for p in curve:
        s, h = aggregate(r.logits, r.valid, ensemble, select_views(4, 3, p.clips, p.crops))
        assert (p.top1, p.top5, p.unscored) == (topk_accuracy(s, r.labels, 1, h), topk_accuracy(s, r.labels, 5, h),
                                                int((~h).sum()))
