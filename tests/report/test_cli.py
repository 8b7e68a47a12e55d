"""``python -m stvit_video.report`` and the import boundary of the package."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stvit_video.report.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, code: str = "") -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "stvit_video.report", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_rebuilds_an_identical_report_from_npz(built, tmp_path):
    results, _, out = built
    saved = results.save(tmp_path / "test_results.npz")
    done = _run(str(saved), "--out", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "again" / "report.json").read_bytes() == (out / "report.json").read_bytes()
    assert "top-1" in done.stdout and str(tmp_path / "again" / "report.html") in done.stdout
    for name in ("report.html", "views_curve.png", "per_class.png", "confusion.png"):
        assert (tmp_path / "again" / name).stat().st_size > 1000


def test_cli_rebuilds_an_identical_report_from_pt(built, tmp_path, capsys):
    results, _, out = built
    saved = results.save(tmp_path / "test_results.pt")
    assert main([str(saved), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.json").read_bytes() == (out / "report.json").read_bytes()
    assert "mean-class" in capsys.readouterr().out


def test_cli_missing_file_is_one_error_line_and_exit_2(tmp_path):
    done = _run(str(tmp_path / "nope.npz"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: results file not found: {tmp_path / 'nope.npz'}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["corrupt.npz", "corrupt.pt", "results.csv"])
def test_cli_unreadable_file_is_one_error_line_and_exit_2(tmp_path, capsys, name):
    bad = tmp_path / name
    bad.write_bytes(b"\x00garbage" * 50)
    assert main([str(bad), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0]
    assert captured.out == ""


def test_report_package_imports_and_builds_without_torch(tmp_path):
    """With torch made unimportable, ``import stvit_video.report`` pulls neither torch nor
    matplotlib, and a whole .npz -> report round trip works."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys, time

        class BlockTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision"):
                    raise ModuleNotFoundError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, BlockTorch())
        import stvit_video
        start = time.perf_counter()
        import stvit_video.report as report
        elapsed = time.perf_counter() - start
        loaded = sorted(m for m in ("torch", "torchvision", "matplotlib") if m in sys.modules)
        assert loaded == [], loaded
        assert elapsed < 2.0, elapsed
        import numpy as np
        r = report.EvalResults(logits=np.zeros((2, 2, 3), np.float32), valid=np.ones((2, 2), bool),
                               labels=np.array([0, 1]), paths=["a", "b"], class_names=["x", "y", "z"],
                               num_clips=2, num_crops=1)
        r = report.EvalResults.load(r.save({str(tmp_path / "r.npz")!r}))
        built = report.build_report(r, {str(tmp_path / "out")!r})
        try:
            r.save({str(tmp_path / "r.pt")!r})
        except report.ResultsError as e:
            assert "pip install torch" in str(e)
        else:
            raise AssertionError(".pt saved without torch")
        assert "torch" not in sys.modules
        print(built["headline"]["top1"])
    """)
    done = _run(code=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "50.0"  # all-zero logits: ties go to class 0, right for video 0 only
    assert (tmp_path / "out" / "report.html").is_file()
