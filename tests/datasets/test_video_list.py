from pathlib import Path

import pytest

from stvit_video.datasets.video_list import (full_class_names, load_split, read_class_folders, read_class_names,
                                             read_csv_list)
from stvit_video.utils.errors import DataError


def _csv(tmp_path: Path, text: str, name: str = "train.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_parses_from_the_right_paths_with_spaces(tmp_path):
    path = _csv(tmp_path, "air drumming/abc.mp4 3\n\n  /abs/path/x y.mp4 0  \nplain.mp4 9\n")
    records = read_csv_list(path, num_classes=10, path_prefix="/data/k400")
    assert [tuple(r) for r in records] == [
        ("/data/k400/air drumming/abc.mp4", 3),
        ("/abs/path/x y.mp4", 0),  # absolute paths ignore the prefix
        ("/data/k400/plain.mp4", 9),
    ]


def test_csv_without_prefix_and_other_separator(tmp_path):
    path = _csv(tmp_path, "a, b/c.mp4,2\nd.mp4,0\n")
    records = read_csv_list(path, num_classes=3, separator=",")
    assert [tuple(r) for r in records] == [(str(tmp_path / "a, b/c.mp4"), 2), (str(tmp_path / "d.mp4"), 0)]


def test_relative_paths_belong_to_the_list_folder_not_the_working_directory(tmp_path, monkeypatch):
    data = tmp_path / "prepared"
    data.mkdir()
    _csv(data, "videos/a.mp4 1\n../elsewhere/b.mp4 2\n/abs/c.mp4 0\n")
    monkeypatch.chdir(tmp_path)  # neither the cwd nor a relative data dir matter
    records = read_csv_list(Path("prepared") / "train.csv", num_classes=3)
    assert [r.path for r in records] == [str(data / "videos/a.mp4"), str(data / "../elsewhere/b.mp4"), "/abs/c.mp4"]
    moved = tmp_path / "moved"
    data.rename(moved)  # a prepared folder can be moved: its paths follow it
    assert read_csv_list(moved / "train.csv", num_classes=3)[0].path == str(moved / "videos/a.mp4")
    # a relative prefix stays relative to the working directory, as in SlowFast
    with_prefix = read_csv_list(moved / "train.csv", num_classes=3, path_prefix="k400")
    assert with_prefix[0].path == "k400/videos/a.mp4" and with_prefix[2].path == "/abs/c.mp4"


def test_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("\ufeffair drumming/é.mp4 3\nb.mp4 1\n".encode("utf-8"))  # Windows spreadsheets
    records = read_csv_list(path, num_classes=10, path_prefix="/data")
    assert [tuple(r) for r in records] == [("/data/air drumming/é.mp4", 3), ("/data/b.mp4", 1)]
    names = tmp_path / "classnames.txt"
    names.write_bytes("\ufeffabseiling\r\nair drumming\r\n".encode("utf-8"))
    assert read_class_names(names, num_classes=2) == ["abseiling", "air drumming"]


def test_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("caf\xe9.mp4 1\n".encode("latin-1"))
    with pytest.raises(DataError, match="cannot read the video list .*train.csv as UTF-8"):
        read_csv_list(path, num_classes=2)


@pytest.mark.parametrize("line, message", [
    ("abc.mp4", "line 2: expected 'path label'"),
    ("air drumming/abc.mp4", "line 2: label 'drumming/abc.mp4' is not an integer"),
    ("abc.mp4 three", "line 2: label 'three' is not an integer"),
    ("abc.mp4 10", "line 2: label 10 outside [0, MODEL.NUM_CLASSES = 10)"),
    ("abc.mp4 -1", "line 2: label -1 outside [0, MODEL.NUM_CLASSES = 10)"),
])
def test_bad_csv_line_names_file_and_line(tmp_path, line, message):
    path = _csv(tmp_path, f"ok.mp4 1\n{line}\nok2.mp4 2\n")
    with pytest.raises(DataError) as info:
        read_csv_list(path, num_classes=10)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_official_kinetics_csv_gets_a_hint(tmp_path):
    path = _csv(tmp_path, "label,youtube_id,time_start,time_end,split\nabseiling,abc,0,10,train\n")
    with pytest.raises(DataError, match="official Kinetics annotation CSV"):
        read_csv_list(path, num_classes=400)


def test_empty_csv_is_an_error(tmp_path):
    with pytest.raises(DataError, match="has no videos"):
        read_csv_list(_csv(tmp_path, "\n\n"), num_classes=10)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_class_folders_sorted_union_of_splits(tmp_path):
    for rel in ("train/zumba/b.mp4", "train/zumba/a.mp4", "train/air drumming/c.mkv",
                "train/air drumming/notes.txt", "val/bowling/d.mp4", "val/zumba/e.mp4"):
        _touch(tmp_path / rel)
    train = load_split(tmp_path, "train", num_classes=3)
    val = load_split(tmp_path, "val", num_classes=3)
    assert train.class_names == val.class_names == ["air drumming", "bowling", "zumba"]
    assert [(Path(r.path).name, r.label) for r in train.records] == [("c.mkv", 0), ("a.mp4", 2), ("b.mp4", 2)]
    assert [(Path(r.path).name, r.label) for r in val.records] == [("d.mp4", 1), ("e.mp4", 2)]


def test_class_folders_more_classes_than_the_head(tmp_path):
    for name in ("a", "b", "c"):
        _touch(tmp_path / name / "x.mp4")
    with pytest.raises(DataError, match="3 classes but MODEL.NUM_CLASSES = 2"):
        read_class_folders(tmp_path, num_classes=2)


def test_csv_wins_over_folders_and_missing_split_names_both(tmp_path):
    _touch(tmp_path / "train" / "a" / "x.mp4")
    _csv(tmp_path, "from_csv.mp4 1\n")
    assert load_split(tmp_path, "train", num_classes=2).records[0].path == str(tmp_path / "from_csv.mp4")
    with pytest.raises(DataError) as info:
        load_split(tmp_path, "val", num_classes=2)
    assert str(tmp_path / "val.csv") in str(info.value) and str(tmp_path / "val") in str(info.value)


def test_csv_lists_take_class_names_from_classnames_txt(tmp_path):
    _csv(tmp_path, "a.mp4 2\nb.mp4 0\n")
    assert load_split(tmp_path, "train", num_classes=3).class_names is None  # no file: ids only
    (tmp_path / "classnames.txt").write_text("abseiling\nair drumming\nzumba\n\n")
    videos = load_split(tmp_path, "train", num_classes=3)
    assert videos.class_names == ["abseiling", "air drumming", "zumba"]
    assert [r.label for r in videos.records] == [2, 0]


@pytest.mark.parametrize("text, num_classes, message", [
    ("a\nb\n", 3, "lists 2 classes but MODEL.NUM_CLASSES = 3"),
    ("a\nb\nc\nd\n", 3, "lists 4 classes but MODEL.NUM_CLASSES = 3"),
    ("a\n\nc\n", 3, "line 2: blank class name"),
    ("a\nb\na\n", 3, "line 3: class 'a' repeats line 1"),
])
def test_bad_classnames_txt_names_the_file(tmp_path, text, num_classes, message):
    _csv(tmp_path, "a.mp4 0\n")
    (tmp_path / "classnames.txt").write_text(text)
    with pytest.raises(DataError) as info:
        load_split(tmp_path, "train", num_classes=num_classes)
    assert str(tmp_path / "classnames.txt") in str(info.value) and message in str(info.value)


def test_labels_must_index_the_class_names(tmp_path):
    _csv(tmp_path, "a.mp4 0\nb.mp4 2\n")
    (tmp_path / "classnames.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"train.csv line 2: label 2 outside \[0, MODEL.NUM_CLASSES = 2\)"):
        load_split(tmp_path, "train", num_classes=2)


def test_class_folders_ignore_classnames_txt(tmp_path):
    for rel in ("train/zumba/a.mp4", "train/bowling/b.mp4"):
        _touch(tmp_path / rel)
    (tmp_path / "classnames.txt").write_text("x\ny\nz\n")  # neither read nor checked for folders
    assert load_split(tmp_path, "train", num_classes=3).class_names == ["bowling", "zumba"]


def test_full_class_names_name_every_id_of_the_head():
    # class folders may cover fewer classes than MODEL.NUM_CLASSES: reports and predictions
    # still need a name for every output id
    assert full_class_names(["cat", "dog"], 4) == ["cat", "dog", "2", "3"]
    assert full_class_names(None, 3) == ["0", "1", "2"]
    assert full_class_names(["a", "b", "c"], 3) == ["a", "b", "c"]
