"""TEST.COMPARE_WITH: other runs' report.json files as rows of this report."""
import json

from stvit_video.report.compare import comparison_rows


def _report(top1: float, gflops: float) -> dict:
    return {"headline": {"top1": top1, "top5": 100.0, "one_view": {"top1": top1 - 1}, "videos": 160,
                         "views_text": "4 clips x 3 crops = 12 views"},
            "meta": {"model": {"arch": "swin3d_demo", "gflops_per_view": gflops}}}


def test_rows_carry_the_other_runs_numbers_and_flops_relative_to_this_model(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report(93.75, 0.2178)))
    rows, skipped = comparison_rows([path], own_gflops=0.1153)
    assert skipped == []
    (name, row), = rows.items()
    assert name == f"swin3d_demo ({path})"
    assert row["top1"] == 93.75 and row["one_view_top1"] == 92.75 and row["gflops_per_view"] == 0.2178
    assert "0.2178 GFLOPs per view (1.89x this model's 0.1153)" in row["note"]
    assert row["note"].startswith("4 clips x 3 crops = 12 views: top-1 93.75%")


def test_missing_and_broken_files_are_left_out_with_the_reason(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"headline": {}}))
    rows, skipped = comparison_rows([tmp_path / "missing.json", broken, wrong])
    assert rows == {}
    assert "missing.json: not found (test that run first)" in skipped[0]
    assert "broken.json: not a readable report.json (JSONDecodeError" in skipped[1]
    assert "wrong.json: not a readable report.json (KeyError" in skipped[2]
