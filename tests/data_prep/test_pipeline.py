"""index -> resize -> verify -> lists on the tiny raw sets of tests/helpers/raw_kinetics.py, in each raw
layout."""
import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from data_prep.annotations import Annotation, write_annotation_csv
from data_prep.cli import main
from data_prep.manifest import read_manifest
from data_prep.probe import probe_video
from stvit_video.datasets.decoder import open_video
from stvit_video.bench.videos import read_frame_index
from stvit_video.datasets.video_list import read_csv_list

from tests.helpers.raw_kinetics import (CLASS_NAMES, CLIP_FRAMES, CORRUPT, END, MISSING, ROWS, START,
                                        UNTRIMMED_FRAMES, raw_file_path, write_indexed_video)

LAYOUTS = ["cvdf", "classes", "untrimmed"]


def _all(raw_set, out: Path, *extra: str) -> int:
    return main(["all", "--annotations", str(raw_set.annotations), "--raw", str(raw_set.raw), "--out", str(out),
                 "--short-side", "48", "--workers", "1", "--no-progress", *extra])


@pytest.fixture(scope="module")
def runs(raw_sets, tmp_path_factory):
    """layout -> (OUT, exit code, stdout) of one `all` run per layout (verify with pyav)."""
    outputs = {}
    for layout in LAYOUTS:
        out = tmp_path_factory.mktemp(f"out_{layout}")
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = _all(raw_sets[layout], out, "--backend", "pyav")
        outputs[layout] = SimpleNamespace(out=out, code=code, stdout=buffer.getvalue())
    return outputs


@pytest.mark.parametrize("layout", LAYOUTS)
def test_index_detects_layout_and_finds_missing_and_corrupt(runs, layout):
    stdout = runs[layout].stdout
    assert runs[layout].code == 0, stdout
    assert f"index: layout {layout} (detected" in stdout
    assert "train  1 of 5 videos missing (20.0%), 0 unreadable" in stdout
    assert "val    0 of 3 videos missing (0.0%), 1 unreadable" in stdout
    rows = {r.youtube_id: r for r in read_manifest(runs[layout].out / "manifest.csv")}
    assert len(rows) == len(ROWS)
    assert rows[MISSING].status == "missing" and rows[MISSING].path == ""
    assert rows[CORRUPT].status == "bad" and "cannot open" in rows[CORRUPT].reason
    good = [r for r in rows.values() if r.status == "ok"]
    assert len(good) == 7
    assert all((r.width, r.height, r.fps) == (64, 48, 10) for r in good)
    assert all(r.trim == (layout == "untrimmed") for r in rows.values())
    assert rows["aaaaaaaaa-1"].label == "air drumming" and rows["iiiiiiiiiii"].label == ""
    # the encoding is recorded next to the lists, for the evaluation report's provenance
    encoding = json.loads((runs[layout].out / "encoding.json").read_text())
    assert encoding["short_side"] == 48 and encoding["gop"] == 32 and encoding["codec"] == "h264"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_resize_outputs_are_trimmed_scaled_h264_and_complete(runs, layout):
    out = runs[layout].out
    videos = sorted((out / "videos").rglob("*"))
    assert not [p for p in videos if p.name.endswith(".part")]
    mp4 = [p for p in videos if p.suffix == ".mp4"]
    assert len(mp4) == 7  # 9 rows - missing - corrupt
    assert (out / "videos/train/aaaaaaaaa-1_000001_000003.mp4").is_file()
    for path in mp4:
        probe = probe_video(path)
        assert (probe.ok, probe.codec, probe.width, probe.height, probe.frames) == (True, "h264", 64, 48, 20)
    # frame k of every output is frame 10 + k of the source: trimmed to [1 s, 3 s) exactly
    with open_video(mp4[0], "pyav") as video:
        frames = video.get_frames([0, 7, 19])
    assert [read_frame_index(f) for f in frames] == [CLIP_FRAMES[0], CLIP_FRAMES[7], CLIP_FRAMES[-1]]
    failed = (out / "resize_failed.txt").read_text()
    assert failed.startswith(f"videos/val/{CORRUPT}_000001_000003.mp4\traw file ") and len(failed.splitlines()) == 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lists_parse_with_the_loader_and_paths_are_relative_to_out(runs, layout):
    out = runs[layout].out
    names = (out / "classnames.txt").read_text().splitlines()
    assert names == CLASS_NAMES  # alphabetical over all splits ("bowling" is only in val)
    assert json.loads((out / "classids.json").read_text()) == {n: i for i, n in enumerate(CLASS_NAMES)}
    lists = {}
    for split in ("train", "val", "test"):
        lines = (out / f"{split}.csv").read_text().splitlines()
        relative = [line.rsplit(" ", 1)[0] for line in lines]
        assert all(not Path(rel).is_absolute() and (out / rel).is_file() for rel in relative)
        records = read_csv_list(out / f"{split}.csv", num_classes=len(names))
        # the loader resolves relative paths against the list's folder (= OUT)
        assert [Path(r.path) if Path(r.path).is_absolute() else out / r.path for r in records] == \
            [out / rel for rel in relative]
        lists[split] = {Path(r.path).name.split("_000001")[0]: r.label for r in records}
    assert lists["train"] == {"aaaaaaaaa-1": 1, "bbbbbbbbb_2": 1, "ccccccccccc": 0, "eeeeeeeeeee": 3}
    assert lists["val"] == {"ggggggggggg": 1, "hhhhhhhhhhh": 2}  # the corrupt one is excluded
    assert (out / "test.csv").read_text() == (out / "val.csv").read_text()  # no test labels
    stdout = runs[layout].stdout
    assert "test.csv = the val videos" in stdout
    summary = (out / "summary.txt").read_text()
    assert summary in stdout
    table = {line.split()[0]: line.split()[1:] for line in summary.splitlines()[2:6]}
    # listed found missing resized failed in-list
    assert table["train"] == ["5", "4", "1", "4", "0", "4"]
    assert table["val"] == ["3", "3", "0", "2", "1", "2"]
    assert table["test"] == ["1", "1", "0", "1", "0", "2", "(=", "val)"]
    assert table["total"] == ["9", "8", "1", "7", "1", "6"]


def test_verify_lists_a_damaged_output_and_lists_excludes_it(raw_sets, tmp_path, capsys):
    out = tmp_path / "out"
    assert _all(raw_sets["cvdf"], out) == 0  # verify with decord
    assert (out / "bad_videos.txt").read_text() == ""
    victim = out / "videos/train/bbbbbbbbb_2_000001_000003.mp4"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # damaged after it was finished
    assert main(["verify", "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    bad = (out / "bad_videos.txt").read_text().splitlines()
    assert len(bad) == 1 and bad[0].startswith("videos/train/bbbbbbbbb_2_000001_000003.mp4\tdecoder decord: ")
    assert main(["lists", "--out", str(out)]) == 0
    assert "bbbbbbbbb_2" not in (out / "train.csv").read_text()
    printed = capsys.readouterr().out
    assert "1 resized videos failed verification" in printed and "train with:" in printed
    assert main(["lists", "--out", str(out), "--no-next-step"]) == 0  # as DATA.GENERATE_IF_MISSING calls it
    assert "train with:" not in capsys.readouterr().out


def test_manifest_jsonl_and_explicit_layout(raw_sets, tmp_path, capsys):
    raw_set, out = raw_sets["classes"], tmp_path / "out"
    manifest = tmp_path / "m.jsonl"
    code = main(["index", "--annotations", str(raw_set.annotations / "train.csv"), "--raw", str(raw_set.raw),
                 "--out", str(out), "--manifest", str(manifest), "--layout", "classes", "--workers", "1",
                 "--no-progress"])
    assert code == 0 and "layout classes (given)" in capsys.readouterr().out
    rows = read_manifest(manifest)
    assert [r.youtube_id for r in rows] == [r.youtube_id for r in ROWS if r.split == "train"]
    assert Path(rows[0].path).parent.name == "air_drumming"


def test_errors_exit_2_with_one_line(raw_sets, tmp_path, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("label,youtube_id,time_start,split\nabseiling,x,1,train\n")
    code = main(["index", "--annotations", str(bad_csv), "--raw", str(raw_sets["cvdf"].raw), "--out",
                 str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "bad.csv line 1: missing column(s) time_end" in err
    assert err.count("\n") == 1
    code = main(["index", "--annotations", str(raw_sets["cvdf"].annotations), "--raw", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "none of the 9 annotation rows matches a video" in err
    assert main(["resize", "--out", str(tmp_path / "none")]) == 2
    assert "no manifest" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    root = Path(__file__).resolve().parents[2]
    run = lambda *args: subprocess.run([sys.executable, "-m", "data_prep", *args], cwd=root, capture_output=True,
                                       text=True, timeout=60)
    shown = run("--help")
    assert shown.returncode == 0 and all(c in shown.stdout for c in ("index", "resize", "verify", "lists", "synthetic"))
    failed = run("lists", "--out", str(tmp_path / "nothing"))
    assert failed.returncode == 2 and failed.stderr.startswith("error: no manifest ") and failed.stderr.count("\n") == 1


# Ids that start with "-" (1 in 64 YouTube ids does): nothing may take them for an option.
DASH_ROWS = [Annotation("air drumming", "-abc_DEF123", START, END, "train", ""),
             Annotation("abseiling", "--33Lscn6sk", START, END, "train", ""),
             Annotation("abseiling", "-v", START, END, "validate", ""),
             Annotation("", "-tst-_-", START, END, "test", "")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ids_starting_with_a_dash_work_end_to_end(tmp_path, monkeypatch, capsys, layout):
    clip = write_indexed_video(tmp_path / "clip.mp4", UNTRIMMED_FRAMES if layout == "untrimmed" else CLIP_FRAMES)
    raw, out = tmp_path / "raw", tmp_path / "out"
    for number, row in enumerate(DASH_ROWS):
        path = raw_file_path(raw, row, layout, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, path)
    write_annotation_csv(tmp_path / "annotations.csv", DASH_ROWS)
    monkeypatch.chdir(raw)  # --raw . : raw paths such as "-abc_DEF123.mp4" reach PyAV as they are
    code = main(["all", "--annotations", str(tmp_path / "annotations.csv"), "--raw", ".", "--out", str(out),
                 "--short-side", "48", "--workers", "1", "--no-progress"])  # verify with decord, the default
    printed = capsys.readouterr().out
    assert code == 0 and f"index: layout {layout} (detected" in printed, printed
    assert all(r.status == "ok" for r in read_manifest(out / "manifest.csv"))
    assert (out / "bad_videos.txt").read_text() == "" and (out / "resize_failed.txt").read_text() == ""
    for split, ids in (("train", {"-abc_DEF123": 1, "--33Lscn6sk": 0}), ("val", {"-v": 0}), ("test", {"-v": 0})):
        records = read_csv_list(out / f"{split}.csv", num_classes=2)
        assert {Path(r.path).name: r.label for r in records} == {f"{i}_000001_000003.mp4": c for i, c in ids.items()}
        assert all(Path(r.path) == out / "videos" / ("val" if split == "test" else split) / Path(r.path).name
                   for r in records)
    with open_video(out / "videos/train/-abc_DEF123_000001_000003.mp4", "decord") as video:
        assert [read_frame_index(f) for f in video.get_frames([0, 19])] == [CLIP_FRAMES[0], CLIP_FRAMES[-1]]
    assert (out / "videos/test/-tst-_-_000001_000003.mp4").is_file()
