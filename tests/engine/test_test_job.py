"""The multi-view tester end to end: a trained checkpoint tested with nothing but --cfg, failed
views, the random-model refusal, the temporal-shuffle check (exact across 2 processes:
test_train_job.py's killed two-process run tests itself)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import simplejson

from stvit_video.cli import main
from stvit_video.datasets.video_list import load_split, records_digest
from stvit_video.engine import test_job
from stvit_video.report import EvalResults

from tests.helpers.colour_data import tiny_overrides


@pytest.fixture(scope="module")
def trained(colour_data, tmp_path_factory) -> Path:
    """A checkpoint from the trainer (2 epochs on the colour data)."""
    out = tmp_path_factory.mktemp("trained")
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "TEST.ENABLE", "False",
                                                          "SOLVER.MAX_EPOCH", 2)]) == 0
    return out / "checkpoints" / "best.pyth"


def _test_args(data: Path, out: Path, ckpt: Path, *extra) -> list[str]:
    # deliberately no model, class or transform keys: the checkpoint carries them
    return ["--cfg", "kinetics400", "TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", str(ckpt),
            "DATA.PATH_TO_DATA_DIR", str(data), "OUTPUT_DIR", str(out), "DATA_LOADER.NUM_WORKERS", "0",
            "NUM_GPUS", "0", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.BATCH_SIZE", "12", "TEST.SPLIT", "test",
            *map(str, extra)]


def _report(out: Path) -> dict:
    return simplejson.loads((out / "eval" / "report.json").read_text())


def test_a_trained_checkpoint_tests_with_nothing_but_cfg(colour_data, trained, tmp_path, capsys):
    out = tmp_path / "test"
    assert main(_test_args(colour_data, out, trained)) == 0
    report = _report(out)
    assert report["headline"]["top1"] >= 90.0 and report["headline"]["videos"] == 12
    assert report["headline"]["views_text"] == "2 clips x 3 crops = 6 views"
    assert sorted(c["name"] for c in report["per_class"]) == ["blue things", "green things", "red things"]
    meta = report["meta"]
    assert meta["checkpoint"]["path"] == str(trained) and len(meta["checkpoint"]["sha256"]) == 64
    assert meta["model"]["arch"] == "stvit_r_swin3d_tiny_perframe" and meta["model"]["input"] == "4x32x32"
    assert meta["data"]["videos_listed"] == meta["data"]["videos_present"] == 12
    # the config asked for 224 crops and 32 frames; the checkpoint's transform won, and said so
    assert "DATA.TEST_CROP_SIZE = 224 in the config" in capsys.readouterr().out
    results = EvalResults.load(out / "eval" / "results.npz")
    assert results.logits.shape == (12, 6, 3) and results.valid.all()
    for name in ("report.html", "views_curve.png", "per_class.png", "confusion.png"):
        assert (out / "eval" / name).stat().st_size > 0
    # 2 segment-centred clips: the centre clip is neither, so the 1-view headline has its own pass
    assert results.centre_logits.shape == (12, 3) and results.centre_valid.all()
    assert report["headline"]["one_view"]["view"] == "the centre clip x centre crop, evaluated in a separate pass"
    assert report["views_curve"][0]["clips_used"] == "clip 2 of 2 (at 75%)"
    assert meta["data"]["split"] == "test" and meta["data"]["list_sha256"] == records_digest(
        load_split(colour_data, "test", num_classes=3).records)
    assert "selected_on_test_list" not in meta["checkpoint"]  # best.pyth was selected on val, tested on test


def test_failed_views_are_listed_with_the_reason_or_stop_the_test(colour_data, trained, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(colour_data, data)
    (data / "videos" / "test_1_0.mp4").write_bytes(b"not a video at all")
    (data / "encoding.json").write_text('{"short_side": 40, "codec": "h264"}')  # as data_prep resize writes it
    out = tmp_path / "test"
    assert main(_test_args(data, out, trained)) == 0
    report = _report(out)
    assert report["meta"]["data"]["short_side"] == 40
    assert report["headline"]["videos_with_failed_views"] == 1 and report["headline"]["unscored_videos"] == 1
    (failed,) = report["failed_videos"]
    assert failed["path"].endswith("videos/test_1_0.mp4") and "cannot open" in failed["reason"]
    assert main(_test_args(data, tmp_path / "strict", trained, "TEST.FAILED_VIEW_POLICY", "error")) == 2
    assert "TEST.FAILED_VIEW_POLICY" in capsys.readouterr().err


def test_a_random_model_is_refused_unless_allowed(colour_data, tmp_path, capsys):
    args = ["--cfg", "kinetics400", *tiny_overrides(colour_data, tmp_path / "r", "TRAIN.ENABLE", "False")]
    assert main(args) == 2
    assert "refusing to report the accuracy of a randomly initialised model" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(args + ["TEST.ALLOW_RANDOM_INIT", "True"]) == 0
    assert _report(tmp_path / "r")["meta"]["checkpoint"]["random_init"] is True


def test_the_temporal_shuffle_check_is_reported(colour_data, trained, tmp_path):
    out = tmp_path / "test"
    assert main(_test_args(colour_data, out, trained, "TEST.TEMPORAL_SHUFFLE_CHECK", True)) == 0
    extra = _report(out)["meta"]["extra_results"]["temporally shuffled clips"]
    # colour needs no motion: shuffling the frames changes nothing here
    assert extra["top1"] == _report(out)["headline"]["top1"]
    assert "frames in a fixed random order" in extra["note"]


def test_a_checkpoint_of_ours_initialises_a_new_run_or_a_fine_tuning(colour_data, trained, tmp_path):
    import torch

    from stvit_video.engine.config_check import load_run_config
    from stvit_video.engine.model_setup import build_initialised_model

    saved = torch.load(trained, weights_only=True)["model"]
    cfg = load_run_config("kinetics400", tiny_overrides(colour_data, tmp_path, "TRAIN.CHECKPOINT_FILE_PATH", trained))
    for k, v in build_initialised_model(cfg).state_dict().items():
        assert torch.equal(v, saved[k]), k
    # other classes: the head starts fresh, the rest is the checkpoint's
    cfg = load_run_config("kinetics400", tiny_overrides(colour_data, tmp_path, "TRAIN.CHECKPOINT_FILE_PATH", trained,
                                                        "MODEL.NUM_CLASSES", 5, "TRAIN.CHECKPOINT_REINIT_HEAD", True))
    model = build_initialised_model(cfg)
    assert model.head.fc.out_features == 5
    assert torch.equal(model.state_dict()["norm.weight"], saved["norm.weight"])


def test_the_report_says_when_best_pyth_was_selected_on_the_tested_list(colour_data, trained, tmp_path):
    out = tmp_path / "val"
    assert main(_test_args(colour_data, out, trained, "TEST.SPLIT", "val")) == 0
    checkpoint = _report(out)["meta"]["checkpoint"]
    assert checkpoint["selected_on_test_list"] is True and "optimistic" in checkpoint["note"]
    assert _report(out)["meta"]["data"]["split"] == "val"


def test_a_class_order_other_than_the_checkpoints_is_refused_or_mapped_by_name(colour_data, trained, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(colour_data, data)
    # the same classes listed green, blue, red: the lists' labels follow the new order
    (data / "classnames.txt").write_text("green things\nblue things\nred things\n")
    swap = {"0": "1", "1": "0", "2": "2"}
    for split in ("train", "val", "test"):
        rows = [line.rsplit(" ", 1) for line in (data / f"{split}.csv").read_text().splitlines()]
        (data / f"{split}.csv").write_text("".join(f"{path} {swap[label]}\n" for path, label in rows))
    assert main(_test_args(data, tmp_path / "refused", trained)) == 2
    err = capsys.readouterr().err
    assert "class order of the checkpoint and of the test list differ (class 0 is 'green things' in" in err
    assert "but 'blue things' in" in err and not (tmp_path / "refused" / "eval").exists()
    assert main(_test_args(data, tmp_path / "mapped", trained, "TEST.REORDER_CLASSES", True)) == 0
    assert main(_test_args(colour_data, tmp_path / "plain", trained)) == 0
    mapped, plain = EvalResults.load(tmp_path / "mapped/eval/results.npz"), EvalResults.load(
        tmp_path / "plain/eval/results.npz")
    np.testing.assert_array_equal(mapped.logits, plain.logits[:, :, [1, 0, 2]])
    assert _report(tmp_path / "mapped")["headline"]["top1"] == _report(tmp_path / "plain")["headline"]["top1"]


def test_flops_that_cannot_be_counted_cost_no_results(colour_data, trained, tmp_path, monkeypatch, capsys):
    def broken(model, view):
        raise RuntimeError("tracer broke")

    monkeypatch.setattr(test_job, "count_flops", broken)
    out = tmp_path / "test"
    assert main(_test_args(colour_data, out, trained)) == 0
    assert "the FLOPs of SwinTransformer3D could not be counted (RuntimeError: tracer broke)" in capsys.readouterr().out
    model = _report(out)["meta"]["model"]
    assert model["flops_error"] == "RuntimeError: tracer broke" and "gflops_per_view" not in model
    assert EvalResults.load(out / "eval/results.npz").logits.shape == (12, 6, 3)


def test_flops_are_counted_on_the_models_device(monkeypatch):
    """A CUDA model fed a CPU zero clip crashed the test after every view was computed; the
    meta device stands in for the GPU here."""
    import torch

    from stvit_video.config import get_cfg_defaults

    seen = []
    monkeypatch.setattr(test_job, "count_flops", lambda model, view: seen.append(view.device.type) or _Total())
    model = torch.nn.Linear(2, 2).to("meta")
    cost = test_job._cost(model, get_cfg_defaults())
    assert seen == ["meta"] and cost["gflops_per_view"] == 2.0 and cost["params_m"] == 6e-6


class _Total:
    total = 2e9
