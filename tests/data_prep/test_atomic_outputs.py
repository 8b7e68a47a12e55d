"""Every file data_prep writes for others appears whole or not at all: a write that fails
half-way leaves the previous file and no temporary file behind."""
from pathlib import Path

import pytest

from data_prep.annotations import Annotation, write_annotation_csv
from data_prep.lists import ListsReport, write_lists
from data_prep.manifest import ManifestRow, write_manifest
from data_prep.resize import ResizeOptions, resize_all, write_encoding_info
from data_prep.verify import write_bad_list
from stvit_video.utils import atomic

LIST_FILES = ("train.csv", "val.csv", "test.csv", "classnames.txt", "classids.json")


class Unprintable:
    """A value whose formatting fails: serialisation breaking in the middle of a file."""

    def __format__(self, spec: str) -> str:
        raise RuntimeError("serialisation failed")


def _report(names: list[str], train: list, val: list) -> ListsReport:
    return ListsReport(names, {"train": train, "val": val, "test": list(val)}, {}, True)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _fail_fsync(monkeypatch) -> None:
    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fail)


def test_lists_that_fail_half_way_keep_the_previous_set(tmp_path, monkeypatch):
    write_lists(_report(["abseiling", "yoga"], [("videos/train/a.mp4", 0)], [("videos/val/b.mp4", 1)]), tmp_path)
    before = _snapshot(tmp_path)
    assert sorted(before) == sorted(LIST_FILES)
    broken = _report(["abseiling", "yoga", "zumba"], [("videos/train/c.mp4", 2)], [("videos/val/d.mp4", Unprintable())])
    with pytest.raises(RuntimeError, match="serialisation failed"):
        write_lists(broken, tmp_path)
    assert _snapshot(tmp_path) == before  # not even train.csv, whose text was fine, changed
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        write_lists(_report(["zumba"], [("videos/train/e.mp4", 0)], []), tmp_path)
    assert _snapshot(tmp_path) == before


def test_bad_list_that_fails_half_way_keeps_the_previous_file(tmp_path, monkeypatch):
    path = write_bad_list(tmp_path / "bad_videos.txt", {"videos/train/a.mp4": "decoder decord: broken"})
    before = _snapshot(tmp_path)
    bad = {"videos/train/b.mp4": "truncated", "videos/train/c.mp4": Unprintable()}  # fails after the first line
    with pytest.raises(RuntimeError):
        write_bad_list(path, bad)
    assert _snapshot(tmp_path) == before
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError):
        write_bad_list(path, {})
    assert _snapshot(tmp_path) == before


def _manifest_rows(fail: bool):
    yield ManifestRow("/raw/a.mp4", "yoga", "train", "a", 0, 10, False, 10.0, 30.0, 300, 340, 256, "ok", "", "a.csv:2")
    if fail:
        raise RuntimeError("the rows broke after the first one was written")


WRITERS = {
    "manifest.csv": lambda path: write_manifest(path, _manifest_rows(False)),
    "manifest.jsonl": lambda path: write_manifest(path, _manifest_rows(False)),
    "train.csv": lambda path: write_annotation_csv(path, [Annotation("yoga", "-abc_DEF123", 0, 10, "train", "")]),
    "encoding.json": lambda path: write_encoding_info(path.parent, ResizeOptions()),
    "resize_failed.txt": lambda path: resize_all([], path.parent, ResizeOptions(), progress=False),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_other_outputs_that_fail_half_way_keep_the_previous_file(tmp_path, monkeypatch, name):
    (tmp_path / name).write_text("previous\n")
    _fail_fsync(monkeypatch)  # the bytes are in a temporary file when this fails
    with pytest.raises(OSError, match="No space left"):
        WRITERS[name](tmp_path / name)
    assert _snapshot(tmp_path) == {name: b"previous\n"}
    monkeypatch.undo()
    WRITERS[name](tmp_path / name)
    assert _snapshot(tmp_path).keys() == {name} and (tmp_path / name).read_text() != "previous\n"


def test_manifest_whose_rows_fail_half_way_keeps_the_previous_file(tmp_path):
    path = write_manifest(tmp_path / "manifest.csv", _manifest_rows(False))
    before = _snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="after the first one"):
        write_manifest(path, _manifest_rows(True))
    assert _snapshot(tmp_path) == before
