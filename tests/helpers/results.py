"""Hand-made test results (``EvalResults``) for the report tests.

Logits are built as ``log(p)`` from chosen probability rows, so the per-view softmax gives back
``p`` and aggregated scores can be worked out by hand. :func:`curve_case` is the hand-computed
views-curve case; :func:`random_results` noisy results with failed views, and :data:`FULL_META`
the provenance a tester run records, for the report's layout and speed tests.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from stvit_video.report import EvalResults


def log_probs(*rows: list[float]) -> np.ndarray:
    """(len(rows), K) float32 logits whose softmax is each row (rows are normalised)."""
    p = np.asarray(rows, dtype=np.float64)
    return np.log(p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# The views-curve case: 2 videos, 4 clips x 3 crops, 6 classes. View 7 (centre clip 2, centre
# crop) misleads both videos; the other views are right. Sums worked out by hand in test_metrics.
CURVE_NORMAL_0 = [0.5, 0.3, 0.1, 0.05, 0.03, 0.02]  # video 0 (label 0)
CURVE_VIEW7_0 = [0.1, 0.8, 0.04, 0.03, 0.02, 0.01]
CURVE_NORMAL_1 = [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]  # video 1 (label 2)
CURVE_VIEW7_1 = [0.3, 0.2, 0.01, 0.2, 0.15, 0.14]  # label last: wrong even for top-5


def curve_case() -> EvalResults:
    logits = np.empty((2, 12, 6), dtype=np.float32)
    logits[0] = log_probs(*[CURVE_NORMAL_0] * 12)
    logits[1] = log_probs(*[CURVE_NORMAL_1] * 12)
    logits[0, 7] = log_probs(CURVE_VIEW7_0)[0]
    logits[1, 7] = log_probs(CURVE_VIEW7_1)[0]
    return EvalResults(logits=logits, valid=np.ones((2, 12), bool), labels=np.array([0, 2]),
                       paths=["a.mp4", "b.mp4"], class_names=[f"c{i}" for i in range(6)], num_clips=4, num_crops=3)


def random_results(num_videos: int = 60, num_classes: int = 8, num_clips: int = 4, num_crops: int = 3,
                   seed: int = 0, signal: float = 0.4, meta: Optional[dict] = None) -> EvalResults:
    """Noisy logits with the label boosted by ``signal``; video 3 has no decodable view (its
    logits are NaN garbage) and video 5 lost two views."""
    rng = np.random.default_rng(seed)
    v = num_clips * num_crops
    labels = rng.integers(0, num_classes, num_videos)
    logits = rng.normal(size=(num_videos, v, num_classes)).astype(np.float32)
    logits[np.arange(num_videos), :, labels] += signal
    valid = np.ones((num_videos, v), bool)
    valid[3] = False
    logits[3] = np.nan
    valid[5, :2] = False
    names = [f"class <{i}> & 'quoted'" for i in range(num_classes)]
    return EvalResults(logits=logits, valid=valid, labels=labels,
                       paths=[f"videos/{names[c]}/clip {i:03d}.mp4" for i, c in enumerate(labels)],
                       class_names=names, num_clips=num_clips, num_crops=num_crops,
                       failures={3: "decord: cannot open <file>", 5: "mid-stream DECORDError"}, meta=meta or {})


FULL_META = {
    "model": {"arch": "stvit_swin_t", "params_m": 27.9, "gflops_per_view": 88.1, "gflops_per_video": 1057.2,
              "input": "32x224x224"},
    "cost": {"wall_time_s": 12.5, "videos_per_s": 4.8, "views_per_s": 57.6, "device": "cpu", "global_batch": 8},
    "checkpoint": {"path": "runs/k400/checkpoints/epoch_030.pyth", "sha256": "ab" * 32, "epoch": 30},
    "config": {"name": "kinetics400", "sha256": "cd" * 32},
    "data": {"list": "data/k400/val.csv", "videos_listed": 64, "videos_present": 60, "decoder": "decord",
             "short_side": 256, "crop": 224},
    "software": {"python": "3.11.7", "torch": "2.14.1", "stvit_video": "0.1.0"},
    "extra_results": {"temporally shuffled clips": {"top1": 41.5, "note": "frames of each clip shuffled"}},
    "notes": "hand-made <b>test</b> run",
}
