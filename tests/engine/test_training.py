"""The trainer end to end on a tiny generated data set (CPU): learning, exact resume, NaN guard,
gradient accumulation, the LR schedule as applied, 2-process runs, bad input."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import simplejson
import torch

from stvit_video.cli import main
from stvit_video.engine.schedule import WarmupCosine

from .conftest import tiny_overrides

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
    schedule = WarmupCosine(base_lr=0.002, warmup_epochs=1.5, max_epochs=4, warmup_start_factor=0.1, end_factor=0.0)
    assert lrs == pytest.approx([schedule(step / 4) for step in range(16)], rel=1e-9)
    assert lrs[0] == pytest.approx(0.0002) and lrs[6] == pytest.approx(0.002)  # start, and warmup end: 6/4 = 1.5
    assert lrs[-1] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * (3.75 - 1.5) / 2.5)))


def test_an_interrupted_run_resumes_to_the_same_weights(colour_data, tmp_path):
    args = ("TEST.ENABLE", "False", "TRAIN.CHECKPOINT_PERIOD_ITERS", "2", "SOLVER.MAX_EPOCH", "3")
    whole = _run_cli(*tiny_overrides(colour_data, tmp_path / "whole", *args))
    assert whole.returncode == 0, whole.stderr
    # the same run, killed inside epoch 2 (after its mid-epoch checkpoint), then started again
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "tools/run_net.py", "--cfg", "kinetics400",
                             *tiny_overrides(colour_data, out, *args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    mid = out / "checkpoints" / "checkpoint_epoch_00002_iter_000002.pyth"
    deadline = time.time() + 240
    while not mid.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "checkpoints" / "checkpoint_epoch_00003.pyth").exists()
    # a newer checkpoint that is empty (a disk full at the wrong moment) must be skipped
    (out / "checkpoints" / "checkpoint_epoch_00002_iter_000003.pyth").write_bytes(b"")
    resumed = _run_cli(*tiny_overrides(colour_data, out, *args))
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoint_epoch_00002_iter_000003.pyth" in resumed.stdout + resumed.stderr  # the skip is named
    assert "resuming from" in resumed.stdout
    a, b = _weights(tmp_path / "whole/checkpoints/last.pyth"), _weights(out / "checkpoints/last.pyth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


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


@pytest.mark.parametrize("launcher", ["spawn", "torchrun"])
def test_two_processes_split_the_global_batch_and_match_one_process(colour_data, tmp_path, launcher):
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
