"""The trainer end to end on a tiny generated data set (CPU): learning, exact resume, NaN guard,
gradient accumulation, the LR schedule as applied, 2-process runs, bad input."""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import simplejson
import torch

import stvit_video.engine.checkpoint as ckpt
from stvit_video.cli import main
from stvit_video.datasets.kinetics import VideoClipDataset
from stvit_video.engine import train_job
from stvit_video.engine.distributed import DistContext
from stvit_video.engine.schedule import LRSchedule
from stvit_video.report import EvalResults

from tests.helpers.colour_data import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "tools/run_net.py", "--cfg", "kinetics400", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _stats(out: Path, mode: str = "train") -> list[dict]:
    rows = [simplejson.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    return [r for r in rows if r["mode"] == mode]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_a_few_epochs_drive_the_loss_down_and_validation_accuracy_up(colour_data, tmp_path):
    out = tmp_path / "run"
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "TEST.ENABLE", "False")]) == 0
    train = _stats(out)
    assert train[0]["loss"] > 0.9  # about ln(3) = 1.10 at the start: 3 classes, chance
    assert train[-1]["loss"] < 0.35 * train[0]["loss"]
    val = _stats(out, "val")
    assert [r["epoch"] for r in val] == [1, 2, 3, 4]
    assert val[-1]["top1_acc"] >= 90.0  # chance is 33%
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "best.pyth", "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth", "checkpoint_epoch_00003.pyth",
        "checkpoint_epoch_00004.pyth", "last.pyth"]
    state = torch.load(ckpts / "last.pyth", weights_only=True)
    assert state["class_names"] == ["blue things", "green things", "red things"]
    assert state["test_transform"]["crop"] == 32 and state["arch"]["name"] == "stvit_r_swin3d_tiny_perframe"
    assert state["epoch"] == 4 and state["iter_in_epoch"] == 0 and state["global_step"] == 16


def test_the_applied_lr_follows_warmup_and_cosine(colour_data, tmp_path):
    out = tmp_path / "run"
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "TEST.ENABLE", "False", "LOG_PERIOD", 1,
                                                          "TRAIN.EVAL_PERIOD", 4, "SOLVER.WARMUP_EPOCHS", 1.5,
                                                          "TENSORBOARD.ENABLE", True)]) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard scalars were written
    lrs = [r["lr"] for r in _stats(out)]
    schedule = LRSchedule(policy="mmcv_cosine", base_lr=0.002, warmup_epochs=1.5, max_epochs=4,
                          warmup_start_factor=0.1, end_factor=0.0)
    assert lrs == pytest.approx([schedule(step / 4) for step in range(16)], rel=1e-9)
    # the official curve: the warm-up factor over the per-epoch cosine, cos(pi * floor(e) / 4)
    assert lrs[0] == pytest.approx(0.0002)
    assert lrs[5] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi / 4)) * (1 - (1 - 1.25 / 1.5) * 0.9))
    assert lrs[6] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi / 4)))  # warm-up ends at 6/4 = 1.5
    assert lrs[-1] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))


def test_a_nan_loss_stops_the_run_naming_the_iteration(colour_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "TEST.ENABLE", "False",
                                                          "SOLVER.BASE_LR", "1e12", "SOLVER.WARMUP_EPOCHS", "0.0")])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: training: the loss became NaN or inf at epoch 1 (1-based), iteration" in err
    assert not list((out / "checkpoints").glob("*.pyth"))  # nothing was saved after the NaN


def test_accumulating_k_batches_equals_one_k_times_larger_batch(colour_data, tmp_path):
    finals = []
    for batch, accum in ((6, 1), (3, 2)):
        out = tmp_path / f"b{batch}"
        assert main(["--cfg", "kinetics400", *tiny_overrides(
            colour_data, out, "TEST.ENABLE", "False", "TRAIN.BATCH_SIZE", batch, "TRAIN.ACCUM_STEPS", accum,
            "SOLVER.MAX_EPOCH", 1, "SOLVER.WARMUP_EPOCHS", 0.0, "SOLVER.OPTIMIZING_METHOD", "sgd")]) == 0
        finals.append(_weights(out / "checkpoints/last.pyth"))
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=0, atol=1e-6, msg=k)


def test_two_processes_split_the_global_batch_and_match_one_process(colour_data, tmp_path):
    launcher = "torchrun"  # the spawn launcher: test_a_killed_two_process_run_resumes_to_the_same_weights
    args = ("TEST.ENABLE", "False", "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "1", "DIST.TIMEOUT_S", "60")
    single = tmp_path / "single"
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, single, *args)]) == 0
    out = tmp_path / launcher
    overrides = tiny_overrides(colour_data, out, *args)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if launcher == "spawn":
        result = _run_cli(*overrides, "NUM_GPUS", "2", env=env)
    else:
        result = subprocess.run([sys.executable, "-W", "ignore", "-m", "torch.distributed.run", "--nproc_per_node",
                                 "2", "--standalone", "tools/run_net.py", "--cfg", "kinetics400", *overrides],
                                cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "on 2 process(es) (cpu), 3 clips per process per step" in result.stdout
    assert "the weights are identical on all 2 ranks" in result.stdout
    # the two ranks' shards together are the one process's batch, so the update is the same
    a, b = _weights(single / "checkpoints/last.pyth"), _weights(out / "checkpoints/last.pyth")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_bad_input_is_one_error_line_and_writes_nothing(colour_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--cfg", "kinetics400", *tiny_overrides(tmp_path / "no_such_data", out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no train list: neither") and "no_such_data/train.csv" in err
    assert not out.exists()
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "NUM_GPUS", 4)]) == 2
    assert "TRAIN.BATCH_SIZE = 6: the global batch must be divisible by NUM_GPUS x NUM_SHARDS = 4" in \
        capsys.readouterr().err
    assert not out.exists()


class _Killed(BaseException):
    """Ends an in-process run the way a kill does: nothing after it runs."""


def _kill_after_mid_epoch_save(monkeypatch, samples: int) -> None:
    """Raise :class:`_Killed` right after the mid-epoch checkpoint of epoch 2 at ``samples`` is written."""
    save = ckpt.save_training_checkpoint

    def save_then_die(folder, state, **kw):
        path = save(folder, state, **kw)
        if state["epoch"] == 1 and state["position"]["samples_in_epoch"] == samples:
            raise _Killed(path)
        return path

    monkeypatch.setattr(ckpt, "save_training_checkpoint", save_then_die)


def test_a_mid_epoch_resume_with_another_batch_trains_each_sample_once(colour_data, tmp_path, monkeypatch, capsys):
    loaded: list[tuple[int, int]] = []  # (epoch, position) of every training item loaded
    item = VideoClipDataset.__getitem__

    def spy(self, key):
        if isinstance(key, tuple):  # training items come as (index, item seed); seed 0: seed = epoch * P + position
            loaded.append(divmod(key[1], 1_000_003))
        return item(self, key)

    monkeypatch.setattr(VideoClipDataset, "__getitem__", spy)
    out = tmp_path / "run"
    args = ("TEST.ENABLE", "False", "SOLVER.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_PERIOD_ITERS", 1, "LOG_PERIOD", 1)
    _kill_after_mid_epoch_save(monkeypatch, samples=12)
    with pytest.raises(_Killed):  # epoch 1, then 2 of epoch 2's 4 steps of 6 clips
        main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, *args)])
    monkeypatch.undo()
    monkeypatch.setattr(VideoClipDataset, "__getitem__", spy)
    # another training list cannot continue that epoch: refused, naming the way out
    other = tmp_path / "other_data"
    shutil.copytree(colour_data, other)
    (other / "train.csv").write_text("".join((colour_data / "train.csv").read_text().splitlines(True)[:-1]))
    assert main(["--cfg", "kinetics400", *tiny_overrides(other, out, *args)]) == 2
    err = capsys.readouterr().err
    assert "after 12 samples of an order drawn from 24 training videos" in err and "now there are 23" in err
    assert "checkpoint_epoch_00002_sample_00000012.pyth" in err
    # resumed with 4 clips per step instead of 6: the rest of epoch 2 in 3 steps of 4
    before = len(loaded)
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, *args, "TRAIN.BATCH_SIZE", 4)]) == 0
    assert "continues from sample 12 with another layout (batch_size 6 -> 4)" in capsys.readouterr().out
    assert sorted(p for e, p in loaded if e == 1) == list(range(24))  # epoch 2: every position exactly once
    assert sorted(p for e, p in loaded[before:]) == list(range(12, 24))
    rows = _stats(out)
    assert [r["global_step"] for r in rows] == list(range(1, 10))  # 4 + 2 steps of 6, then 3 of 4: none twice
    # each resumed step runs at the LR of its sample position (12, 16, 20 of 24), scaled to the batch of 4
    schedule = LRSchedule(policy="mmcv_cosine", base_lr=0.002 * 4 / 6, warmup_epochs=0.5, max_epochs=2,
                          warmup_start_factor=0.1, end_factor=0.0)
    assert [r["lr"] for r in rows[6:]] == pytest.approx([schedule(1 + p / 24) for p in (12, 16, 20)], rel=1e-12)


def test_a_killed_two_process_run_resumes_to_the_same_weights_and_tests_as_one_process(colour_data, tmp_path):
    """SlowFast-style spawn of 2 processes: killed in mid-epoch, resumed exactly; then its
    multi-view test gathers every (video, view) once, exactly as a 1-process test of the same
    checkpoint."""
    # dropout and drop path draw from each rank's own generator: only every rank's saved RNG state
    # brings both ranks back to where they were
    args = ("TEST.ENABLE", "False", "SOLVER.MAX_EPOCH", "1", "TRAIN.CHECKPOINT_PERIOD_ITERS", "1", "NUM_GPUS", "2",
            "MODEL.HEAD_DROPOUT", "0.5", "SWIN.DROP_PATH_RATE", "0.2", "DIST.TIMEOUT_S", "60")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = _run_cli(*tiny_overrides(colour_data, tmp_path / "whole", *args), env=env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "tools/run_net.py", "--cfg", "kinetics400",
                             *tiny_overrides(colour_data, out, *args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    mid = out / "checkpoints" / "checkpoint_epoch_00001_sample_00000012.pyth"  # 2 of the epoch's 4 steps
    deadline = time.time() + 240
    while not mid.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, as a preemption does
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    state = torch.load(mid, weights_only=True)
    assert len(state["rng_ranks"]) == 2 and not torch.equal(state["rng_ranks"][0]["torch"],
                                                            state["rng_ranks"][1]["torch"])
    resumed = _run_cli(*tiny_overrides(colour_data, out, *args, "TEST.ENABLE", "True"), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    a, b = _weights(tmp_path / "whole/checkpoints/last.pyth"), _weights(out / "checkpoints/last.pyth")
    _assert_resumed_weights(a, b, state["model"])
    one = tmp_path / "one"
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, one, "TRAIN.ENABLE", "False",
                                                          "TEST.CHECKPOINT_FILE_PATH", out / "checkpoints/best.pyth")]) == 0
    x, y = EvalResults.load(one / "eval/results.npz"), EvalResults.load(out / "eval/results.npz")
    assert np.array_equal(x.valid, y.valid) and np.array_equal(x.labels, y.labels) and x.logits.shape == (12, 6, 3)
    np.testing.assert_allclose(x.logits, y.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.centre_logits, y.centre_logits, rtol=1e-5, atol=1e-5)
    report = [simplejson.loads((o / "eval/report.json").read_text()) for o in (one, out)]
    assert report[0]["headline"] == report[1]["headline"] and report[0]["views_curve"] == report[1]["views_curve"]


def _assert_resumed_weights(whole: dict, resumed: dict, at_resume: dict) -> None:
    """The resumed run's weights are the uninterrupted run's: bitwise as a rule; MKL's CPU kernels
    may round differently between processes (their results depend on memory alignment), which
    stays far below what a wrong sample, LR or random stream does: as much as the resumed steps."""
    diff = max(float((whole[k].double() - resumed[k].double()).abs().max()) for k in whole
               if whole[k].is_floating_point())
    update = max(float((whole[k].double() - at_resume[k].double()).abs().max()) for k in whole
                 if whole[k].is_floating_point())
    assert update > 0 and diff <= 0.01 * update, (diff, update)


class _Stop(Exception):
    pass


def test_the_model_is_on_its_device_before_the_optimizer_and_the_resumed_state(colour_data, tmp_path, monkeypatch):
    """Fused AdamW on CUDA refuses a CPU ``step`` (pytorch#104767): the optimizer must be built over
    parameters already on the device, and a checkpoint loaded into both there. A CPU machine checks
    the order with the meta device standing in for the GPU."""
    from stvit_video.engine.config_check import load_run_config

    out = tmp_path / "run"
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, "TEST.ENABLE", False,
                                                          "SOLVER.MAX_EPOCH", 1)]) == 0
    cfg = load_run_config("kinetics400", tiny_overrides(colour_data, out, "SOLVER.MAX_EPOCH", 2))
    seen = {}
    build = train_job.build_optimizer

    def record_build(cfg, model, **kw):
        seen["build"] = next(model.parameters()).device.type
        return build(cfg, model, **kw)

    def record_load(state, model, optimizer, scaler, **kw):
        seen["load"] = (next(model.parameters()).device.type, optimizer.param_groups[0]["params"][0].device.type)
        raise _Stop

    monkeypatch.setattr(train_job, "build_optimizer", record_build)
    monkeypatch.setattr(ckpt, "load_for_resume", record_load)
    with pytest.raises(_Stop):
        train_job.train(cfg, DistContext(device=torch.device("meta")))
    assert seen == {"build": "meta", "load": ("meta", "meta")}


def test_rows_logged_after_the_resumed_checkpoint_are_dropped_once(tmp_path):
    from stvit_video.engine.hooks import drop_stats_after

    stats = tmp_path / "stats.jsonl"
    rows = [{"mode": "train", "global_step": s} for s in (1, 2, 3, 4)] + [{"mode": "val", "epoch": 1, "global_step": 4}]
    stats.write_text("".join(simplejson.dumps(r) + "\n" for r in rows) + '{"mode": "train", "glo')  # cut by the kill
    assert drop_stats_after(stats, 2) == 4  # steps 3 and 4, the validation at 4, the cut line
    assert [simplejson.loads(line)["global_step"] for line in stats.read_text().splitlines()] == [1, 2]
    assert drop_stats_after(stats, 2) == 0 and drop_stats_after(tmp_path / "none.jsonl", 0) == 0


def test_a_pretrained_backbone_at_the_full_lr_is_a_warning(caplog):
    from stvit_video.engine.config_check import load_run_config

    with caplog.at_level("WARNING"):
        train_job._warn_pretrained_lr(load_run_config("kinetics400", ["TRAIN.CHECKPOINT_FILE_PATH", "in1k.pth"]))
        assert "SOLVER.BACKBONE_LR_MULT is 1.0" in caplog.text
        caplog.clear()
        train_job._warn_pretrained_lr(load_run_config("kinetics400/swin_t_32x2_in1k"))
        assert caplog.text == ""


def test_validation_runs_the_bare_model_inside_compile_and_ddp_wrappers():
    """torch.compile wraps DDP in a compiled run; validating through either wrapper would run
    DDP's forward, whose collectives wait for ranks that have a different number of batches."""
    from stvit_video.datasets.device_transforms import DeviceTransform
    from stvit_video.datasets.loader import VideoBatch
    from stvit_video.engine.train_loop import run_evaluation

    class Wrapper(torch.nn.Module):  # stands for DDP (.module) and compile (._orig_mod), in that order
        def __init__(self, inner, attribute):
            super().__init__()
            setattr(self, attribute, inner)

        def forward(self, x):
            raise AssertionError("validation called a wrapper")

    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 4 * 4, 3))
    ddp = Wrapper(bare, "module")
    ddp.__class__ = type("FakeDDP", (Wrapper, torch.nn.parallel.DistributedDataParallel), {})
    compiled = Wrapper(ddp, "_orig_mod")
    frames = torch.randint(0, 256, (4, 3, 2, 4, 4), dtype=torch.uint8)
    batch = VideoBatch(frames, torch.tensor([0, 1, 2, 0]), torch.arange(4), torch.zeros(4, dtype=torch.long),
                       torch.zeros(4, dtype=torch.bool), torch.zeros(0, dtype=torch.long), ())
    result = run_evaluation(compiled, [batch], device=torch.device("cpu"),
                            device_transform=DeviceTransform([0.5] * 3, [0.25] * 3), amp_dtype=None)
    assert result["count"] == 4 and bare.training


def test_repeated_sampling_trains_in_clips_and_resumes_inside_an_epoch_exactly(colour_data, tmp_path, monkeypatch,
                                                                                 capsys):
    """DATA.NUM_REPEATED_SAMPLES 2: 6-clip steps of 3 videos, 4 steps per epoch as with k = 1; the two
    epochs of a cycle load each of the 24 videos once, also across a kill and resume in epoch 2."""
    loaded: list[tuple[int, int, int]] = []  # (epoch, position, video) of every training item
    item = VideoClipDataset.__getitem__

    def spy(self, key):
        if isinstance(key, tuple):
            loaded.append((*divmod(key[1], 1_000_003), key[0]))
        return item(self, key)

    monkeypatch.setattr(VideoClipDataset, "__getitem__", spy)
    out = tmp_path / "run"
    args = ("TEST.ENABLE", "False", "SOLVER.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_PERIOD_ITERS", 1, "LOG_PERIOD", 1,
            "DATA.NUM_REPEATED_SAMPLES", 2)
    _kill_after_mid_epoch_save(monkeypatch, samples=6)
    with pytest.raises(_Killed):
        main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, *args)])
    assert "repeated sampling: 2 clips per decoded window (1 clip spans); an epoch is 12 videos" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setattr(VideoClipDataset, "__getitem__", spy)
    before = len(loaded)
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, out, *args)]) == 0
    assert sorted(p for e, p, _ in loaded[before:]) == list(range(6, 12))  # the rest of epoch 2, once
    killed_run, resumed_run = loaded[:before], loaded[before:]
    assert sorted(p for e, p, _ in killed_run if e == 1) == list(range(6))
    assert sorted(v for _, _, v in killed_run + resumed_run) == list(range(24))  # the cycle: every video once
    assert [r["global_step"] for r in _stats(out)] == list(range(1, 9))  # 4 steps per epoch, none twice
