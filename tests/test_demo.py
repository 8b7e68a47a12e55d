"""The CPU demo (``run_net.py --cfg demo``) at a reduced size: the same chain of commands, fewer
and shorter clips, fewer epochs, so it fits the suite's time budget.

The full demo (128 x 96 clips, 56 x 56 crops, 30 epochs: 100% top-1, 15.6% shuffled) is measured
in README "Quick start"; here the bar is that the model clearly learns the motion classes
(chance is 12.5%) and that shuffling the frames of the test clips costs much of it, which a model
looking at single frames would not show.
"""
from __future__ import annotations

import json

from data_prep.cli import main as data_prep
from stvit_video.cli import main as run_net

# Measured on the 2-core development machine (seed 0): top-1 72.5%, shuffled 17.5%, in ~60 s.
MIN_TOP1 = 55.0
MIN_SHUFFLE_DROP = 25.0


def test_the_demo_chain_learns_motion_at_a_reduced_size(tmp_path, capsys):
    source, data, out = tmp_path / "source", tmp_path / "data", tmp_path / "out"
    # half the demo's 960 clips, at 64 x 48 px and 30 frames (2 s), trained on 40 x 40 crops for 10 epochs
    assert data_prep(["synthetic", "--out", str(source), "--size", "64x48", "--frames", "30", "--per-class", "40",
                      "--workers", "2", "--no-progress"]) == 0
    assert data_prep(["all", "--annotations", str(source / "annotations"), "--raw", str(source / "raw"),
                      "--out", str(data), "--short-side", "48", "--workers", "2", "--no-progress"]) == 0
    assert run_net(["--cfg", "demo", "DATA.PATH_TO_DATA_DIR", str(data), "OUTPUT_DIR", str(out),
                    "DATA.TRAIN_JITTER_SCALES", "[48, 48]", "DATA.TRAIN_CROP_SIZE", "40", "DATA.TEST_CROP_SIZE", "40",
                    "SOLVER.MAX_EPOCH", "10", "SOLVER.WARMUP_EPOCHS", "1.0", "TRAIN.EVAL_PERIOD", "10",
                    "TRAIN.CHECKPOINT_PERIOD", "10", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "1",
                    "TEST.COMPARE_WITH", "[]"]) == 0
    final = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads((out / "eval" / "report.json").read_text())
    top1 = report["headline"]["top1"]
    shuffled = report["meta"]["extra_results"]["temporally shuffled clips"]["top1"]
    assert f"temporally shuffled: {shuffled:.2f}%" in final and "report.html" in final
    assert report["headline"]["videos"] == 80 and len(report["per_class"]) == 8
    assert top1 >= MIN_TOP1, f"top-1 {top1:.1f}% (shuffled {shuffled:.1f}%)"
    assert top1 - shuffled >= MIN_SHUFFLE_DROP, f"top-1 {top1:.1f}%, shuffled {shuffled:.1f}%"
