"""``python -m data_prep folder``: a user's own videos prepared like Kinetics, on tiny real videos.

One source (class folders with spaces, nested sub-folders, mixed containers, a duplicate across
classes, a duplicate in a class, an unreadable file, a text file, an empty class folder, a
loose video) is prepared once per module; the other tests read its outputs or only collect
(no resize), so the file stays within a few seconds.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from data_prep import api
from data_prep.cli import build_parser, main
from data_prep.folder import SourceVideo, assign_splits, collect_videos, val_count
from data_prep.manifest import output_relpath, read_manifest
from stvit_video.bench.videos import VideoSpec, write_video
from stvit_video.datasets.video_list import load_split
from stvit_video.utils.errors import DataError

CLASSES = ["air drumming", "bowling", "zumba"]  # sorted: the class ids
OPTIONS = ["--short-side", "32", "--workers", "1", "--no-progress"]


def _video(path: Path, number: int) -> Path:
    """A tiny h264 video whose bytes differ for every ``number`` (length and rate vary)."""
    return write_video(path, VideoSpec(64, 48, 8 + number % 9, 10 + 5 * (number // 9), gop=4))


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _build_source(src: Path) -> None:
    """The module's source folder (see the module docstring); 9 usable videos of 3 classes."""
    air, bowling, zumba = (src / name for name in CLASSES)
    for number, name in enumerate(["clip 0.mp4", "clip 1.mkv", "sub/deeper/clip 2.mov", "clip 3.avi"]):
        _video(air / name, number)
    shutil.copyfile(air / "clip 0.mp4", air / "sub" / "same as clip 0.mp4")  # a duplicate in its class
    (air / "readme.txt").write_text("not a video\n")
    for number, name in enumerate(["b0.mp4", "b1.mkv"], start=4):
        _video(bowling / name, number)
    for number, name in enumerate(["z0.mp4", "z1.mp4", "part 2/z2.mp4"], start=6):
        _video(zumba / name, number)
    shutil.copyfile(zumba / "z0.mp4", bowling / "copy.mp4")  # across classes: bowling/ sorts first, kept
    (zumba / "broken.mp4").write_bytes(random.Random(0).randbytes(4096))
    (src / "empty class").mkdir()
    (src / "empty class" / "notes.txt").write_text("nothing yet\n")
    shutil.copyfile(zumba / "z1.mp4", src / "loose.mp4")  # in no class folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> SimpleNamespace:
    """The source, prepared once through the API (verify with decord, the default)."""
    root = tmp_path_factory.mktemp("folder")
    src, out = root / "my videos", root / "out"
    _build_source(src)
    steps: list = []
    summary = api.prepare_folder(out, src=src, val=0.2, seed=0, min_per_class=3, skip_empty=True, short_side=32,
                                 workers=1, progress=False, on_step=steps.append)
    return SimpleNamespace(root=root, src=src, out=out, summary=summary, steps=steps)


def test_class_folders_end_to_end_read_back_by_the_loader(prepared):
    out, summary = prepared.out, prepared.summary
    assert [type(s) for s in prepared.steps] == [api.CollectSummary, api.ResizeSummary, api.VerifySummary,
                                                 api.ListsSummary]
    assert (out / "classnames.txt").read_text() == "".join(f"{name}\n" for name in CLASSES)
    rows = {output_relpath(row): row for row in read_manifest(out / "manifest.csv")}
    listed = {}
    for split in ("train", "val"):
        videos = load_split(out, split, num_classes=len(CLASSES))
        assert videos.class_names == CLASSES
        for record in videos.records:
            relpath = Path(record.path).relative_to(out).as_posix()
            assert Path(record.path).is_file() and relpath.startswith(f"videos/{split}/")
            source = Path(rows[relpath].path).relative_to(prepared.src)
            assert CLASSES[record.label] == source.parts[0]  # the top-level folder is the class
            listed[source.as_posix()] = split
    # nested sub-folders and every container are found; duplicates, broken, loose and text files are not listed
    assert sorted(listed) == sorted(["air drumming/clip 0.mp4", "air drumming/clip 1.mkv", "air drumming/clip 3.avi",
                                     "air drumming/sub/deeper/clip 2.mov", "bowling/b0.mp4", "bowling/b1.mkv",
                                     "bowling/copy.mp4", "zumba/z1.mp4", "zumba/part 2/z2.mp4"])
    # stratified: every class (>= 2 videos) has exactly round(0.2 n) >= 1 val video
    per_class = {name: sorted(s for path, s in listed.items() if path.startswith(name + "/")) for name in CLASSES}
    assert per_class == {"air drumming": ["train"] * 3 + ["val"], "bowling": ["train"] * 2 + ["val"],
                         "zumba": ["train", "val"]}
    assert (out / "test.csv").read_text() == (out / "val.csv").read_text()  # no test given: test = val
    assert summary.counts["train"]["in_list"] == 6 and summary.counts["val"]["in_list"] == 3
    assert summary.usable == 12 and summary.class_names == CLASSES


def test_duplicates_are_reported_and_never_listed_twice(prepared):
    summary = prepared.summary
    assert summary.duplicates == [("air drumming/sub/same as clip 0.mp4", "air drumming/clip 0.mp4"),
                                  ("zumba/z0.mp4", "bowling/copy.mp4")]
    rows = read_manifest(prepared.out / "manifest.csv")
    contents = [_sha256(row.path) for row in rows]
    assert len(contents) == len(set(contents)) == 10  # one row per content: no copy in train and val
    text = (prepared.out / "summary.txt").read_text()
    assert "zumba/z0.mp4  (same content as bowling/copy.mp4, labelled 'bowling' there, 'zumba' here)" in text


def test_unreadable_skipped_small_and_empty_classes_are_in_the_summary(prepared):
    summary, out = prepared.summary, prepared.out
    assert list(summary.unreadable) == ["zumba/broken.mp4"]
    assert "cannot open" in summary.unreadable["zumba/broken.mp4"]
    assert all("broken" not in (out / f"{s}.csv").read_text() for s in ("train", "val"))
    assert summary.counts["train"]["failed"] == 1  # never drawn for val: counted in train
    assert summary.small == {"zumba": {"train": 1, "val": 1}}
    text = (out / "summary.txt").read_text()
    assert text == summary.text + "\n" and text.startswith("split  listed")
    assert "zumba/broken.mp4: cannot open" in text and "zumba: 2 (train 1, val 1)" in text
    assert "air drumming/readme.txt: not a video (extension .txt)" in text
    assert "loose.mp4: not in a class folder" in text
    assert "warning: class folder " in text and "empty class holds no video" in text and "(--skip-empty)" in text


def test_the_command_line_resumes_and_prints_the_summary(prepared, capsys):
    code = main(["folder", "--src", str(prepared.src), "--out", str(prepared.out), "--skip-empty",
                 "--min-per-class", "3", *OPTIONS])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "folder: 10 videos of 3 classes (class folders" in printed  # 9 usable + the broken one
    assert "2 duplicates left out, 1 unreadable, 3 files skipped" in printed and "warning: class folder" in printed
    assert "resize: 0 encoded, 9 already done, 1 failed" in printed  # resumable: the outputs are found again
    assert "zumba/broken.mp4: cannot open" in printed and f"MODEL.NUM_CLASSES {len(CLASSES)}" in printed
    assert (prepared.out / "train.csv").read_text().count("\n") == 6


def _fake(label: str, number: int, split: str = "") -> SourceVideo:
    return SourceVideo(Path(f"/v/{label}/{number}.mp4"), label, split, f"{label}/{number}.mp4", "")


def _draw(videos, seed: int = 0, fraction: float = 0.2) -> dict[Path, str]:
    digests = {v.path: hashlib.sha256(str(v.path).encode()).hexdigest() for v in videos}
    assigned, _ = assign_splits(videos, digests, lambda v: True, fraction=fraction, seed=seed)
    return {v.path: v.split for v in assigned}


def test_the_stratified_draw_is_deterministic_and_stratified():
    videos = [_fake(label, i) for label, n in (("a", 10), ("b", 5), ("c", 2), ("d", 1), ("e", 7)) for i in range(n)]
    splits = _draw(videos)
    val = {label: sum(splits[v.path] == "val" for v in videos if v.label == label) for label in "abcde"}
    assert val == {"a": 2, "b": 1, "c": 1, "d": 0, "e": 1}  # round half up, >= 1 from 2 videos on
    shuffled = list(videos)
    random.Random(1).shuffle(shuffled)
    assert _draw(shuffled) == splits  # not the file-system order
    # a class's draw does not depend on the other classes
    assert {p: s for p, s in _draw([v for v in videos if v.label == "a"]).items()} == \
           {v.path: splits[v.path] for v in videos if v.label == "a"}
    assert any(_draw(videos, seed=seed) != splits for seed in (1, 2, 3))
    assert [val_count(n, 0.5) for n in range(6)] == [0, 0, 1, 2, 2, 3]  # half up, never all


def test_given_split_folders_are_kept_and_a_copy_in_val_is_dropped(prepared, tmp_path):
    src = tmp_path / "ucf"
    for number, name in enumerate(["train/class one/x.mp4", "val/class one/x.mp4", "test/class one/x.mp4",
                                   "val/class two/v.mp4", "test/class two/t.mp4"], start=20):
        _video(src / name, number)
    (src / "train" / "class two").mkdir()
    shutil.copyfile(prepared.src / "bowling" / "b0.mp4", src / "train" / "class two" / "b.mp4")
    shutil.copyfile(prepared.src / "bowling" / "b0.mp4", src / "val" / "class two" / "copy of b.mp4")
    found = collect_videos(src=src, val=0.5, workers=1, progress=False)
    assert found.kind == "split folders" and found.split_rule == "as given"
    assert {(row.split, Path(row.path).relative_to(src).as_posix()) for row in found.rows} == {
        ("train", "train/class one/x.mp4"), ("train", "train/class two/b.mp4"), ("val", "val/class one/x.mp4"),
        ("val", "val/class two/v.mp4"), ("test", "test/class one/x.mp4"), ("test", "test/class two/t.mp4")}
    # the same video in train/ and val/: the val copy is left out (train/ sorts first)
    assert [(d.dropped.name, d.kept.name) for d in found.duplicates] == [("val/class two/copy of b.mp4",
                                                                          "train/class two/b.mp4")]
    shutil.rmtree(src / "val")  # train/ and test/ only: val is drawn from train, test kept
    _video(src / "train" / "class one" / "y.mp4", 25)
    found = collect_videos(src=src, val=0.5, workers=1, progress=False)
    # class one: 2 videos -> 1 val; class two: 1 video, too few to draw from
    assert found.split_counts == {"train": 2, "val": 1, "test": 2}
    assert found.split_rule == "val drawn from train: 50% of each class, seed 0 (test as given)"


def test_a_csv_list_end_to_end(prepared, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    air, zumba = prepared.src / "air drumming", prepared.src / "zumba"
    relative = os.path.relpath(air / "clip 0.mp4", lists)  # relative to the CSV's folder, with a space
    (lists / "mine.csv").write_text(f"path,label,split\n{relative},air drumming,train\n"
                                    f"{air / 'clip 1.mkv'}, air drumming ,validation\n\n"
                                    f"{zumba / 'z1.mp4'},zumba,train\n{zumba / 'part 2' / 'z2.mp4'},zumba,val\n"
                                    f"{air / 'readme.txt'},air drumming,train\n")
    out = tmp_path / "out"
    summary = api.prepare_folder(out, csv=lists / "mine.csv", short_side=32, backend="pyav", workers=1,
                                 progress=False)
    assert summary.collect.collection.split_rule == "as given"
    assert summary.collect.collection.skipped == [(f"{air / 'readme.txt'} (line 7)", "not a video (extension .txt)")]
    records = {split: load_split(out, split, num_classes=2).records for split in ("train", "val")}
    assert [r.label for r in records["train"]] == [0, 1] and [r.label for r in records["val"]] == [0, 1]
    sources = {output_relpath(r): r.source for r in read_manifest(out / "manifest.csv")}
    assert sources[Path(records["train"][0].path).relative_to(out).as_posix()] == "mine.csv:2"
    assert (out / "classnames.txt").read_text() == "air drumming\nzumba\n"
    # no header, no split: val drawn per class
    (lists / "plain.csv").write_text(f"{relative},air drumming\n{air / 'clip 1.mkv'},air drumming\n")
    found = collect_videos(csv=lists / "plain.csv", workers=1, progress=False)
    assert found.split_counts == {"train": 1, "val": 1}


def _error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_inputs_are_one_error_line_naming_the_culprit(prepared, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out"), *OPTIONS]
    src = str(prepared.src)
    assert "--src /nowhere does not exist" in _error(["folder", "--src", "/nowhere", *out], capsys)
    assert "is not a folder" in _error(["folder", "--src", str(prepared.src / "loose.mp4"), *out], capsys)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.mp4").write_bytes(b"")
    assert f"no class folders in {tmp_path / 'flat'}" in _error(["folder", "--src", str(tmp_path / "flat"), *out],
                                                               capsys)
    err = _error(["folder", "--src", src, *out], capsys)  # the empty class folder, without --skip-empty
    assert f"class folder {prepared.src / 'empty class'} holds no video" in err and "--skip-empty" in err
    assert "not both" in _error(["folder", "--src", src, "--csv", "x.csv", *out], capsys)
    assert "none was given" in _error(["folder", *out], capsys)
    for val in ("0", "1", "1.5"):
        assert f"--val {float(val)}: " in _error(["folder", "--src", src, "--val", val, *out], capsys)
    assert "is inside --src" in _error(["folder", "--src", src, "--out", str(prepared.src / "out"), *OPTIONS], capsys)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{prepared.src / 'zumba' / 'z1.mp4'},zumba\n\na.mp4,zumba,train,extra\n")
    assert f"{bad}:3: expected path,label[,split], got 4 field(s)" in _error(["folder", "--csv", str(bad), *out],
                                                                             capsys)
    bad.write_text(f"path,label\n{prepared.src / 'zumba' / 'z1.mp4'},zumba\nmissing video.mp4,zumba\n")
    assert f"{bad}:3: video {tmp_path / 'missing video.mp4'} does not exist" in _error(
        ["folder", "--csv", str(bad), *out], capsys)
    bad.write_text(f"{prepared.src / 'zumba' / 'z1.mp4'},zumba,train\n{prepared.src / 'bowling' / 'b0.mp4'},bowling\n")
    assert f"{bad}:2: no split, but line 1 has one" in _error(["folder", "--csv", str(bad), *out], capsys)
    assert not (tmp_path / "out").exists()  # every error came before any work


def test_no_usable_video_exits_1(tmp_path, capsys):
    (tmp_path / "src" / "junk").mkdir(parents=True)
    (tmp_path / "src" / "junk" / "a.mp4").write_bytes(b"not a video" * 100)
    code = main(["folder", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), *OPTIONS])
    captured = capsys.readouterr()
    assert code == 1 and captured.err == "error: no usable video: every list is empty\n"
    assert "junk/a.mp4: cannot open" in captured.out


def test_collect_raises_data_errors_for_the_api(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="holds no video"):
        collect_videos(src=tmp_path, workers=1, progress=False)
    assert "folder" in build_parser().format_help()
