"""Layout matching, probing, verify's frame choice and the lists' edge cases, without the CLI."""
from pathlib import Path

import pytest

from data_prep.annotations import Annotation
from data_prep.layouts import (VIDEO_EXTENSIONS, FileIndex, detect_layout, match_rows, name_window, normalize_label,
                              scan_videos)
from data_prep.lists import build_lists, class_names
from data_prep.manifest import ManifestRow, output_relpath, read_manifest, write_manifest
from data_prep.probe import probe_video
from data_prep.verify import read_bad_list, verify_video, write_bad_list
from stvit_video.datasets import video_list
from stvit_video.utils.errors import DataError

from tests.helpers.raw_kinetics import CLIP_FRAMES, write_indexed_video


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_video_extensions_are_the_loaders_own_tuple():
    assert VIDEO_EXTENSIONS is video_list.VIDEO_EXTENSIONS  # one shared tuple, not a copy to keep in step


@pytest.mark.parametrize("folder, label", [
    ("air_drumming", "air drumming"), ("Air Drumming", "air drumming"),
    ("passing_American_football_(in_game)", "passing American football (in game)"),
    ("passing_american_football_in_game", "passing American football (in game)"),
    ("massaging_persons_head", "massaging person's head"),
])
def test_class_folder_names_match_labels(folder, label):
    assert normalize_label(folder) == normalize_label(label)


def test_class_folders_prefer_the_label_folder_and_the_exact_clip(tmp_path):
    row = Annotation("air drumming", "ab_cd-ef_gh", 10, 20, "train", "")
    other = Annotation("abseiling", "ab_cd-ef_gh", 30, 40, "train", "")  # same video, other class
    files = [_touch(tmp_path / "abseiling" / "ab_cd-ef_gh_000030_000040.mp4"),
             _touch(tmp_path / "air_drumming" / "ab_cd-ef_gh_000099_000109.mp4"),
             _touch(tmp_path / "air_drumming" / "ab_cd-ef_gh_000010_000020.mp4"),
             _touch(tmp_path / "air_drumming" / "ab_cd-ef_ghX.mp4"),  # another id that starts alike
             _touch(tmp_path / "air_drumming" / ".hidden.mp4"), _touch(tmp_path / "notes.txt"),
             _touch(tmp_path / "air_drumming" / "ab_cd-ef_gh_000010_000020.mp4.part")]
    found = scan_videos(tmp_path)
    assert found == sorted(files[:4], key=str)
    index = FileIndex(found, [row.youtube_id])
    assert match_rows([row, other], index, "classes") == [files[2], files[0]]
    assert index.by_id["ab_cd-ef_gh"] == sorted(files[:3], key=str)  # not "...ghX"
    assert detect_layout([row, other], index).layout == "cvdf"  # exact CVDF names win a tie


def test_layout_detection_flat_ids_are_untrimmed_class_folders_of_ids_are_trimmed(tmp_path):
    rows = [Annotation("abseiling", f"id{i:09d}", 0, 10, "train", "") for i in range(3)]
    flat = [_touch(tmp_path / "flat" / f"id{i:09d}.mp4") for i in range(3)]
    guess = detect_layout(rows, FileIndex(flat, [r.youtube_id for r in rows]))
    assert guess.layout == "untrimmed" and guess.counts == {"cvdf": 0, "classes": 0, "untrimmed": 3}
    folders = [_touch(tmp_path / "k" / "abseiling" / f"id{i:09d}.mp4") for i in range(3)]
    assert detect_layout(rows, FileIndex(folders, [r.youtube_id for r in rows])).layout == "classes"
    with pytest.raises(DataError, match="does not exist"):
        scan_videos(tmp_path / "nowhere")


def test_probe_reports_reasons_and_numbers(tmp_path):
    good = write_indexed_video(tmp_path / "good.mp4", CLIP_FRAMES)
    probe = probe_video(good, decode_first=True)
    assert probe[:8] == (True, "", pytest.approx(2.0), 10.0, 20, 64, 48, "h264")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello\n" * 100)
    assert probe_video(tmp_path / "empty.mp4").reason == "empty file (0 bytes)"
    assert probe_video(tmp_path / "text.mp4").reason.startswith("cannot open: InvalidDataError")
    assert probe_video(tmp_path / "none.mp4").reason.startswith("cannot read the file")


def test_verify_random_frame_is_seeded_by_path(tmp_path, monkeypatch):
    from stvit_video.datasets import decoder

    path = write_indexed_video(tmp_path / "v.mp4", CLIP_FRAMES)
    asked: list[list[int]] = []
    original = decoder.VideoDecoder.get_frames

    def spy(self, indices):
        asked.append(list(indices))
        return original(self, indices)

    monkeypatch.setattr(decoder.VideoDecoder, "get_frames", spy)
    assert verify_video(path, backend="decord", seed=3, key="videos/a.mp4") == ""
    assert verify_video(path, backend="pyav", seed=3, key="videos/a.mp4") == ""
    assert asked[:2] == [[0], [19]] and asked[2] == asked[5]  # same random frame for both backends
    verify_video(path, backend="pyav", seed=4, key="videos/a.mp4")
    verify_video(path, backend="pyav", seed=3, key="videos/b.mp4")
    assert len({a[0] for a in asked[2::3]}) > 1
    write_bad_list(tmp_path / "bad.txt", {"videos/x y.mp4": "decoder pyav: broken"})
    assert read_bad_list(tmp_path / "bad.txt") == {"videos/x y.mp4": "decoder pyav: broken"}
    assert read_bad_list(tmp_path / "none.txt") == {}


def _manifest_row(label: str, split: str, youtube_id: str, status: str = "ok") -> ManifestRow:
    return ManifestRow("/raw/x.mp4", label, split, youtube_id, 0, 10, False, 10.0, 30.0, 300, 340, 256, status,
                       "", "a.csv:2")


def test_lists_with_labelled_test_split_and_manifest_round_trip(tmp_path):
    rows = [_manifest_row("zumba", "train", "a"), _manifest_row("abseiling", "val", "b"),
            _manifest_row("yoga", "test", "c"), _manifest_row("", "test", "d"),
            _manifest_row("abseiling", "train", "e", "missing")]
    for row in rows:
        if row.status == "ok":
            _touch(tmp_path / output_relpath(row))
    assert class_names(rows) == ["abseiling", "yoga", "zumba"]
    report = build_lists(rows, tmp_path, bad={})
    assert not report.test_from_val
    assert report.entries == {"train": [("videos/train/a_000000_000010.mp4", 2)],
                              "val": [("videos/val/b_000000_000010.mp4", 0)],
                              "test": [("videos/test/c_000000_000010.mp4", 1)]}
    assert report.counts["test"]["unlabelled"] == 1 and report.counts["train"]["missing"] == 1
    for name in ("m.csv", "m.jsonl"):
        write_manifest(tmp_path / name, rows)
        assert read_manifest(tmp_path / name) == rows
    (tmp_path / "broken.csv").write_text("path,label\nx,y\n")
    with pytest.raises(DataError, match=r"broken.csv:2: missing manifest column\(s\) split"):
        read_manifest(tmp_path / "broken.csv")


def test_index_warns_when_durations_contradict_the_layout():
    from data_prep.index import _layout_warnings

    long_files = [ManifestRow("/r/a.mp4", "x", "train", f"id{i}", 10, 20, False, 300.0, 30, 9000, 640, 360, "ok",
                              "", "") for i in range(3)]
    assert "--layout untrimmed" in _layout_warnings(long_files, "classes")[0]
    assert _layout_warnings(long_files, "untrimmed") == []
    late = [ManifestRow("/r/a.mp4", "x", "train", f"id{i}", 30, 40, True, 10.0, 30, 300, 640, 360, "bad",
                        "the clip starts at 30 s but the video is only 10.0 s long", "") for i in range(3)]
    assert "--layout cvdf or classes" in _layout_warnings(late, "untrimmed")[0]


def test_a_file_named_with_another_time_window_never_matches(tmp_path):
    row = Annotation("yoga", "-abc_DEF123", 10, 20, "train", "")
    test_row = Annotation("", "-abc_DEF123", 10, 20, "test", "")
    files = [_touch(tmp_path / "yoga" / "-abc_DEF123_000030_000040.mp4"),
             _touch(tmp_path / "test" / "-abc_DEF123_000030_000040_v2.mp4"),
             _touch(tmp_path / "-abc_DEF123_000030_000040.mp4")]
    index = FileIndex(files, [row.youtube_id])
    for layout in ("cvdf", "classes", "untrimmed"):
        assert match_rows([row, test_row], index, layout) == [None, None], layout
    assert name_window("-abc_DEF123_000030_000040_v2", "-abc_DEF123") == (30, 40)
    assert name_window("-abc_DEF123", "-abc_DEF123") is None
    assert name_window("-abc_DEF123_00030_000040", "-abc_DEF123") is None  # not %06d
    same = _touch(tmp_path / "yoga" / "-abc_DEF123_000010_000020_hq.mp4")
    assert match_rows([row], FileIndex(files + [same], [row.youtube_id]), "classes") == [same]


def test_class_folder_fallback_only_for_unlabelled_test_rows_and_unclaimed_files(tmp_path):
    rows = [Annotation("", "claimedvid1", 50, 60, "test", ""),  # before the row that owns the file
            Annotation("zumba", "claimedvid1", 0, 10, "train", ""),
            Annotation("zumba", "wrongfolder", 0, 10, "train", ""),  # its file is in yoga/
            Annotation("yoga", "labelledtst", 0, 10, "test", ""),  # labelled test: no fallback either
            Annotation("", "unlabelled1", 0, 10, "test", ""),
            Annotation("", "twice______", 0, 10, "test", ""),
            Annotation("", "twice______", 20, 30, "test", "")]  # one file for two clips: the first takes it
    files = [_touch(tmp_path / "zumba" / "claimedvid1.mp4"), _touch(tmp_path / "yoga" / "wrongfolder.mp4"),
             _touch(tmp_path / "other" / "labelledtst.mp4"), _touch(tmp_path / "test" / "unlabelled1.mp4"),
             _touch(tmp_path / "test" / "twice______.mp4")]
    index = FileIndex(files, [r.youtube_id for r in rows])
    assert match_rows(rows, index, "classes") == [None, files[0], None, None, files[3], files[4], None]


def test_manifest_refuses_ids_and_splits_that_would_leave_out(tmp_path):
    # output_relpath builds videos/{split}/{id}_...: a hand-edited manifest must not reach outside OUT
    for name, row in (("id.csv", _manifest_row("zumba", "train", "../../x")),
                      ("split.jsonl", _manifest_row("zumba", "../train", "ok_id"))):
        write_manifest(tmp_path / name, [row])
        with pytest.raises(DataError, match=r"\.\./.*is not"):
            read_manifest(tmp_path / name)


def test_index_warns_about_ids_in_several_splits(tmp_path):
    from data_prep.annotations import write_annotation_csv
    from data_prep.index import build_index

    rows = [Annotation("yoga", f"shared{n}", 1, 3, "train", "") for n in range(5)]
    rows += [Annotation("yoga", f"shared{n}", 5, 7, "validate", "") for n in range(4)]
    rows += [Annotation("", "shared0", 9, 11, "test", ""), Annotation("yoga", "alone", 1, 3, "train", "")]
    write_annotation_csv(tmp_path / "ann.csv", rows)
    write_indexed_video(tmp_path / "raw" / "alone_000001_000003.mp4", CLIP_FRAMES)
    result = build_index([tmp_path / "ann.csv"], tmp_path / "raw", progress=False)
    overlap = [w for w in result.warnings if "several splits" in w]
    assert len(overlap) == 1 and overlap[0].startswith(
        f"4 YouTube ids appear in several splits, e.g. shared0 (train/val/test; {tmp_path / 'ann.csv'}:2), "
        f"shared1 (train/val; {tmp_path / 'ann.csv'}:3), shared2")
    assert "shared3" not in overlap[0]  # a few examples, not all


def test_file_index_with_ids_of_several_lengths(tmp_path):
    # "-v.mp4" is shorter than the longest id: it once raised IndexError while indexing
    files = [_touch(tmp_path / "yoga" / "-v.mp4"), _touch(tmp_path / "yoga" / "-v_000001_000003.mp4"),
             _touch(tmp_path / "yoga" / "-abc_DEF123.mp4")]
    index = FileIndex(files, ["-v", "-abc_DEF123", "x" * 64])
    assert index.by_id["-v"] == files[:2] and index.by_id["-abc_DEF123"] == files[2:]
