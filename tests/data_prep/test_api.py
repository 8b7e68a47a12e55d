"""data_prep.api: the functions behind the commands return what the command lines print."""

import pytest

from data_prep import api
from data_prep.cli import build_parser, main
from data_prep.manifest import ManifestRow, write_manifest
from stvit_video.utils.errors import DataError
from tests.helpers.imports import modules_loaded_by

LIST_FILES = ["train.csv", "val.csv", "test.csv", "classnames.txt", "classids.json"]


def test_prepare_all_returns_the_counts_of_the_summary_table(raw_sets, tmp_path, capsys):
    raw_set, out = raw_sets["cvdf"], tmp_path / "out"
    steps = []
    summary = api.prepare_all([raw_set.annotations], raw_set.raw, out, short_side=48, backend="pyav", workers=1,
                              progress=False, on_step=steps.append)
    assert capsys.readouterr().out == ""  # the command line prints, the API does not
    assert [type(s) for s in steps] == [api.IndexSummary, api.ResizeSummary, api.VerifySummary, api.ListsSummary]
    assert summary.out == out and summary.index.result.layout == "cvdf"
    assert summary.index.manifest == out / "manifest.csv"
    # tests/helpers/raw_kinetics.py: one train video missing, one val video corrupt (fails resize), test = val
    counts = {split: [c[k] for k in ("listed", "found", "missing", "resized", "failed", "in_list")]
              for split, c in summary.counts.items()}
    assert counts == {"train": [5, 4, 1, 4, 0, 4], "val": [3, 3, 0, 2, 1, 2], "test": [1, 1, 0, 1, 0, 2]}
    assert summary.counts["test"]["unlabelled"] == 1 and summary.lists.report.test_from_val
    assert summary.resize.report.count("failed") == 1 and summary.resize.failure_log == out / "resize_failed.txt"
    assert summary.verify.report.checked == 7 and summary.bad == {} and summary.verify.backend == "pyav"
    assert [p.name for p in summary.written] == LIST_FILES and all(p.parent == out for p in summary.written)
    assert summary.usable == 8
    assert (out / api.SUMMARY_FILE).read_text() == summary.table + "\n"
    assert (out / "encoding.json").is_file() and summary.resize.encoding_info == out / "encoding.json"


def test_a_bad_backend_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"decoder backend 'ffmpeg': use one of decord, pyav"):
        api.prepare_all([tmp_path / "annotations"], tmp_path / "raw", tmp_path / "out", backend="ffmpeg")
    assert not (tmp_path / "out").exists()


def test_a_bad_shard_names_itself(tmp_path):
    with pytest.raises(ValueError, match=r"shard \(2, 2\)"):
        api.resize(tmp_path, shard=(2, 2))


def _missing_row(youtube_id: str, split: str) -> ManifestRow:
    return ManifestRow("", "abseiling", split, youtube_id, 0, 10, False, 0.0, 0.0, 0, 0, 0, "missing", "", "a.csv:2")


def test_empty_lists_are_a_summary_for_the_api_and_exit_1_for_the_command_line(tmp_path, capsys):
    write_manifest(tmp_path / "manifest.csv", [_missing_row("aaaaaaaaaaa", "train"), _missing_row("bbbbbbbbbbb", "val")])
    listed = api.lists(tmp_path)
    assert listed.usable == 0 and listed.out == tmp_path
    with pytest.raises(api.NoUsableVideoError, match="no usable video: every list is empty"):
        listed.check_usable()
    assert issubclass(api.NoUsableVideoError, DataError)
    assert main(["lists", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: no usable video: every list is empty\n"
    assert captured.out.startswith("split") and "lists: train.csv" in captured.out and "train with" not in captured.out


def test_generate_has_the_defaults_of_the_synthetic_command():
    args = build_parser().parse_args(["synthetic", "--out", "x"])
    defaults = api.generate.__kwdefaults__
    assert defaults["size"] == tuple(int(v) for v in args.size.split("x"))
    assert all(defaults[key] == getattr(args, key) for key in ("per_class", "frames", "fps", "seed"))


def test_importing_the_api_and_the_command_line_loads_neither_torch_nor_pyav():
    code = "import data_prep.api, data_prep.cli; data_prep.cli.build_parser()"
    assert modules_loaded_by(code, ("torch", "av", "decord")) == []
