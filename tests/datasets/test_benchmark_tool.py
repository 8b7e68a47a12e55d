"""Smoke test of tools/benchmark_loader.py on tiny synthetic videos (both backends)."""
import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark_loader.py"


def test_benchmark_loader_runs_on_synthetic_videos(capsys):
    spec = importlib.util.spec_from_file_location("benchmark_loader", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([
        "--synthetic", "2", "--size", "64x48", "--seconds", "1", "--decode-clips", "2",
        "DATA.NUM_FRAMES", "4", "DATA.TRAIN_JITTER_SCALES", "[56, 64]", "DATA.TRAIN_CROP_SIZE", "48",
        "DATA.TEST_CROP_SIZE", "48", "TRAIN.BATCH_SIZE", "2", "NUM_GPUS", "0", "DATA_LOADER.NUM_WORKERS", "0",
        "BENCHMARK.NUM_ITERS", "2", "BENCHMARK.WARMUP_ITERS", "1",
    ]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 synthetic videos (64x48, 30 fps, 1 s" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("decord ", "pyav "))}
    assert set(rows) == {"decord", "pyav"}
    assert all(float(row[1]) > 0 and row[2] == "4" for row in rows.values())  # clips/s, 2 batches of 2
