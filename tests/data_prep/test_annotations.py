from pathlib import Path

import pytest

from data_prep.annotations import (Annotation, clip_stem, deduplicate, read_annotation_csv, read_annotations,
                                   write_annotation_csv)
from stvit_video.utils.errors import DataError

OFFICIAL = """label,youtube_id,time_start,time_end,split,is_cc
"air drumming",-0Hw6Jp_8ns,14,24,train,0
abseiling,--33Lscn6sk,4,14,validate,0
"passing American football (in game)",a_b-c_d-e_f,0.5,10.5,val,1
,xyzxyzxyzxy,7,17,test,0

"""


def _csv(tmp_path: Path, text: str, name: str = "train.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_official_csv_quoted_labels_aliases_and_unlabelled_test(tmp_path):
    path = _csv(tmp_path, OFFICIAL)
    rows = read_annotation_csv(path)
    assert [(r.label, r.youtube_id, r.time_start, r.time_end, r.split) for r in rows] == [
        ("air drumming", "-0Hw6Jp_8ns", 14, 24, "train"),
        ("abseiling", "--33Lscn6sk", 4, 14, "val"),  # "validate" -> val
        ("passing American football (in game)", "a_b-c_d-e_f", 0.5, 10.5, "val"),
        ("", "xyzxyzxyzxy", 7, 17, "test"),
    ]
    assert rows[0].source == f"{path}:2"


def test_test_file_without_label_column(tmp_path):
    rows = read_annotation_csv(_csv(tmp_path, "youtube_id,time_start,time_end,split\nabcdefghijk,0,10,test\n"))
    assert rows == [Annotation("", "abcdefghijk", 0, 10, "test", rows[0].source)]
    with pytest.raises(DataError, match=r"t.csv:2: a train row has no label \(the file has no label column\)"):
        read_annotation_csv(_csv(tmp_path, "youtube_id,time_start,time_end,split\nabcdefghijk,0,10,train\n", "t.csv"))


@pytest.mark.parametrize("text, message", [
    ("label,youtube_id,time_start,split\nabseiling,x,1,train\n", "line 1: missing column(s) time_end"),
    ("label,youtube_id,time_start,time_end,split\nabseiling,x,1,train\n", ":2: expected 5 fields"),
    ("label,youtube_id,time_start,time_end,split\nabseiling,x,one,5,train\n", ":2: time_start 'one' is not a number"),
    ("label,youtube_id,time_start,time_end,split\nabseiling,x,5,5,train\n", ":2: time_end 5 is not after time_start 5"),
    ("label,youtube_id,time_start,time_end,split\nabseiling,x,1,5,holdout\n", ":2: split 'holdout' is not one of"),
    ("label,youtube_id,time_start,time_end,split\n,x,1,5,train\n", ":2: a train row has no label"),
    ("label,youtube_id,time_start,time_end,split\nabseiling,,1,5,train\n", ":2: empty youtube_id"),
    ("", "is empty"),
])
def test_bad_input_names_file_and_line(tmp_path, text, message):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_annotation_csv(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_folders_missing_files_and_dedup(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    _csv(folder, OFFICIAL, "a.csv")
    _csv(folder, OFFICIAL, "b.csv")
    rows = read_annotations([folder])
    kept, dropped = deduplicate(rows)
    assert len(rows) == 8 and len(kept) == 4 and len(dropped) == 4
    assert dropped[0].source.endswith("b.csv:2")
    with pytest.raises(DataError, match="does not exist"):
        read_annotations([tmp_path / "nope.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no"):
        read_annotations([tmp_path / "empty"])


def test_write_round_trip_quotes_labels_with_spaces(tmp_path):
    rows = [Annotation("air drumming", "-0Hw6Jp_8ns", 14, 24, "train", ""),
            Annotation('say "hi", wave', "abcdefghijk", 0, 10, "validate", "")]
    path = write_annotation_csv(tmp_path / "x.csv", rows)
    text = path.read_text().splitlines()
    assert text[0] == "label,youtube_id,time_start,time_end,split,is_cc"
    assert text[1] == '"air drumming",-0Hw6Jp_8ns,14,24,train,0'
    back = read_annotation_csv(path)
    assert [(r.label, r.youtube_id, r.split) for r in back] == [
        ("air drumming", "-0Hw6Jp_8ns", "train"), ('say "hi", wave', "abcdefghijk", "val")]


def test_clip_stem_is_the_cvdf_name():
    assert clip_stem("-0Hw6Jp_8ns", 14, 24) == "-0Hw6Jp_8ns_000014_000024"
    assert clip_stem("abc", 14.9, 24.0) == "abc_000014_000024"  # %06d truncates, as CVDF's script


@pytest.mark.parametrize("youtube_id", ["../../etc", "a/b", "a\\b", "..", "a b", "x" * 65, "abc.def", "abcé"])
def test_youtube_ids_that_could_leave_out_are_refused(tmp_path, youtube_id):
    path = _csv(tmp_path, f'label,youtube_id,time_start,time_end,split\nabseiling,"{youtube_id}",1,5,train\n')
    with pytest.raises(DataError) as info:
        read_annotation_csv(path)
    assert f"{path}:2: youtube_id {youtube_id!r} is not a YouTube id" in str(info.value)


@pytest.mark.parametrize("youtube_id", ["-abc_DEF123", "--33Lscn6sk", "x", "x" * 64, "a_b-c_d-e_f"])
def test_youtube_id_alphabet_and_lengths_accepted(tmp_path, youtube_id):
    text = f"label,youtube_id,time_start,time_end,split\nyoga,{youtube_id},1,5,train\n"
    assert read_annotation_csv(_csv(tmp_path, text))[0].youtube_id == youtube_id
