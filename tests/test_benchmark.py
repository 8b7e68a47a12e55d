"""tools/benchmark.py: runs side by side and writes well-formed JSON (shape of the output, not timing)."""
import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


def _tool():
    spec = importlib.util.spec_from_file_location("benchmark", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("what", ["inference", "train"])
def test_benchmark_writes_one_row_per_model_with_ratios_to_the_first(tmp_path, capsys, what):
    out = tmp_path / "bench.json"
    assert _tool().main(["--what", what, "--models", "swin3d_tiny", "stvit_r_swin3d_tiny_perframe", "--frames", "2",
                         "--crop", "32", "--iters", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == ["swin3d_tiny", "stvit_r_swin3d_tiny_perframe"]
    for r in rows:
        assert {"config", "gflops", "clips_per_s", "peak_mem_mb", "flops_ratio", "speedup"} <= r.keys()
        assert r["what"] == what and r["clips_per_s"] > 0 and r["gflops"] > 0 and r["input"] == [3, 2, 32, 32]
    assert rows[0]["flops_ratio"] == 1.0 and rows[0]["speedup"] == 1.0
    assert rows[1]["flops_ratio"] == pytest.approx(rows[1]["gflops"] / rows[0]["gflops"])
    assert "stvit_r_swin3d_tiny_perframe" in capsys.readouterr().out


def test_loader_benchmark_times_the_training_loader_per_backend_and_worker_count(tmp_path, capsys):
    out = tmp_path / "loader.json"
    assert _tool().main(["--what", "loader", "--videos", "1", "--workers", "0", "1", "--batch", "2", "--iters", "1",
                         "--warmup", "1", "--feed", "1000", "--json", str(out), "--opts", "DATA.NUM_FRAMES", "4",
                         "DATA.TRAIN_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]"]) == 0
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["workers"]) for r in rows] == [("decord", 0), ("decord", 1), ("pyav", 0), ("pyav", 1)]
    for r in rows:
        assert r["what"] == "loader" and r["clips_per_s"] > 0 and r["ms_per_clip"] > 0
        # batches leave the loader as uint8 (B, C, T, H, W): normalisation is the device's job
        assert r["dtype"] == "uint8" and r["batch_shape"] == [2, 3, 4, 32, 32]
    table = capsys.readouterr().out
    assert "decord" in table and "pyav" in table
    expected = -(-1000 // rows[0]["clips_per_s"])  # ceil(1000 clips/s over one worker's rate)
    assert f"decord: {int(expected)} worker(s) keep a step of 1000 clips/s fed" in table


def test_loader_benchmark_names_a_list_too_short_for_the_batches(tmp_path):
    from stvit_video.datasets.throughput import loader_rows, write_benchmark_videos

    data = write_benchmark_videos(tmp_path / "videos", 1, repeats=2, size=(64, 48, 30, 30, 8))
    with pytest.raises(ValueError, match=r"the list has 1 batches of 2 clips, 3 are needed"):
        loader_rows("kinetics400", str(data), backends=["decord"], workers=[0], batch=2, warmup=1, batches=2,
                    opts=["DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]"])
