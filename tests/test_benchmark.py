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
