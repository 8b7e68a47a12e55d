from pathlib import Path

import pytest

from stvit_video.datasets.video_list import load_split, read_class_folders, read_csv_list
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
    assert [tuple(r) for r in records] == [("a, b/c.mp4", 2), ("d.mp4", 0)]


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
    assert load_split(tmp_path, "train", num_classes=2).records[0].path == "from_csv.mp4"
    with pytest.raises(DataError) as info:
        load_split(tmp_path, "val", num_classes=2)
    assert str(tmp_path / "val.csv") in str(info.value) and str(tmp_path / "val") in str(info.value)
