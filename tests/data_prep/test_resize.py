"""resize: sizes, resumability after a kill, idempotence, sharding, frame-rate resampling."""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.cli import main
from data_prep.encode import PART_SUFFIX
from data_prep.manifest import ManifestRow, output_relpath, read_manifest
from data_prep.probe import probe_video
from data_prep.resize import ResizeOptions, output_size, parse_shard, resize_all, shard_of
from stvit_video.datasets.decoder import open_video
from stvit_video.bench.videos import read_frame_index

from tests.helpers.raw_kinetics import CLIP_FRAMES, ROWS

# Runs `python -m data_prep resize ...` in a child that SIGKILLs itself at the Nth encoded frame.
_KILLER = """
import os, signal, sys
from data_prep import encode
from data_prep.cli import main
original, count = encode.H264Writer.write, [0]
def write(self, frame):
    count[0] += 1
    if count[0] == int(os.environ["KILL_AT_FRAME"]):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: like a node failure
    original(self, frame)
encode.H264Writer.write = write
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("width, height, short, expected", [
    (340, 256, 256, (340, 256)), (1280, 720, 256, (456, 256)), (720, 1280, 256, (256, 456)),
    (64, 48, 32, (42, 32)), (853, 480, 320, (568, 320)), (101, 75, 64, (86, 64)),
])
def test_output_size_short_side_and_even(width, height, short, expected):
    assert output_size(width, height, short) == expected


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def _row(i: int) -> ManifestRow:
    return ManifestRow("", "x", "train", f"id{i:09d}", i, i + 10, False, 0, 0, 0, 0, 0, "missing", "", "")


def test_shards_cover_every_video_exactly_once():
    keys = [output_relpath(_row(i)) for i in range(500)]
    for count in (2, 3, 7):
        shards = [{k for k in keys if shard_of(k, count) == i} for i in range(count)]
        assert sum(len(s) for s in shards) == len(keys) and set().union(*shards) == set(keys)
        assert min(len(s) for s in shards) > len(keys) / count * 0.7  # balanced
    # md5-based: the same on every machine and Python process (not hash())
    assert shard_of("videos/train/abc_000001_000011.mp4", 1000) == 338


@pytest.fixture
def indexed(raw_sets, tmp_path):
    """OUT with the manifest of the cvdf raw set (index only)."""
    out = tmp_path / "out"
    raw_set = raw_sets["cvdf"]
    assert main(["index", "--annotations", str(raw_set.annotations), "--raw", str(raw_set.raw), "--out", str(out),
                 "--workers", "1", "--no-progress"]) == 0
    return out


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "videos").rglob("*")) if p.is_file()}


def _resize(out: Path, *extra: str) -> int:
    return main(["resize", "--out", str(out), "--short-side", "32", "--workers", "1", "--no-progress", *extra])


def _frame_indices(path: Path) -> list[int]:
    with open_video(path, "pyav") as video:
        return [read_frame_index(f) for f in video.get_frames(range(video.num_frames))]


def test_killed_run_resumes_to_the_same_outputs_without_partial_files(indexed, tmp_path, capsys):
    # short side 48 = the source size: frame indices stay readable for the comparison below
    reference = tmp_path / "reference"
    assert _resize(reference, "--short-side", "48", "--manifest", str(indexed / "manifest.csv")) == 0
    expected = _outputs(reference)
    assert len(expected) == 7
    # 20 frames per clip: killed near the end of the third clip (x264 has muxed packets by then)
    env = {"KILL_AT_FRAME": "58", "PATH": "/usr/bin:/bin"}
    child = subprocess.run([sys.executable, "-c", _KILLER, "resize", "--out", str(indexed), "--short-side", "48",
                            "--workers", "1", "--no-progress"], env=env, capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = _outputs(indexed)
    parts = [name for name in left if name.endswith(PART_SUFFIX)]
    finished = [name for name in left if name.endswith(".mp4")]
    assert len(parts) == 1 and len(finished) == 2  # a half file, never under a final name
    stamps = {name: (indexed / name).stat().st_mtime_ns for name in finished}
    capsys.readouterr()
    assert main(["resize", "--out", str(indexed), "--short-side", "48", "--workers", "1", "--no-progress"]) == 0
    assert "5 encoded, 2 already done, 1 failed, 1 without a raw file" in capsys.readouterr().out
    after = _outputs(indexed)
    assert sorted(after) == sorted(expected)  # the .part is gone, nothing else is there
    for name in finished:  # finished before the kill: left alone
        assert after[name] == left[name] and (indexed / name).stat().st_mtime_ns == stamps[name]
    assert after == expected  # the same bytes as an uninterrupted run
    assert all(_frame_indices(indexed / name) == list(CLIP_FRAMES) for name in expected)
    assert main(["resize", "--out", str(indexed), "--short-side", "48", "--workers", "1", "--no-progress"]) == 0
    assert "0 encoded, 7 already done" in capsys.readouterr().out  # idempotent
    assert _outputs(indexed) == after


def test_stale_part_removed_damaged_output_and_new_size_redone(indexed, capsys):
    assert _resize(indexed) == 0
    videos = sorted((indexed / "videos").rglob("*.mp4"))
    stale = videos[0].with_name(videos[0].name + PART_SUFFIX)
    stale.write_bytes(b"half a file")
    videos[1].write_bytes(videos[1].read_bytes()[:100])  # damaged under its final name
    capsys.readouterr()
    assert _resize(indexed) == 0
    assert "1 encoded, 6 already done" in capsys.readouterr().out
    assert not stale.exists() and probe_video(videos[1]).ok
    assert _resize(indexed, "--short-side", "48") == 0  # another size: every output is redone
    assert "7 encoded, 0 already done" in capsys.readouterr().out
    assert {(probe_video(p).width, probe_video(p).height) for p in videos} == {(64, 48)}


def test_two_shards_together_resize_everything_once(indexed, capsys):
    counts = []
    for shard, workers in (("0/2", "1"), ("1/2", "2")):  # 2: worker processes (spawn) too
        assert _resize(indexed, "--shard", shard, "--workers", workers) == 0
        line = capsys.readouterr().out
        counts.append(int(line.split(f"(shard {shard}: ")[1].split(" ")[0]))
    assert sum(counts) == len(ROWS) and min(counts) > 0
    assert len(list((indexed / "videos").rglob("*.mp4"))) == 7
    failure_logs = sorted(p.name for p in indexed.glob("resize_failed*"))
    assert failure_logs == ["resize_failed.shard-0-of-2.txt", "resize_failed.shard-1-of-2.txt"]
    assert sum(len(p.read_text().splitlines()) for p in indexed.glob("resize_failed*")) == 1  # the corrupt one
    assert _resize(indexed) == 0 and "0 encoded, 7 already done" in capsys.readouterr().out


def test_fps_resampling_keeps_the_timeline(indexed, tmp_path):
    rows = [r for r in read_manifest(indexed / "manifest.csv") if r.status == "ok"][:1]
    report = resize_all(rows, tmp_path, ResizeOptions(short_side=48, fps=5, gop=4), progress=False)
    assert report.results[0].status == "encoded"
    path = tmp_path / report.results[0].output
    with open_video(path, "pyav") as video:
        assert (video.num_frames, video.fps) == (10, 5.0)  # 2 s at 5 fps
        indices = [read_frame_index(f) for f in video.get_frames(range(10))]
    assert indices == list(CLIP_FRAMES)[::2]  # every other 10-fps source frame
    report = resize_all(rows, tmp_path / "up", ResizeOptions(short_side=48, fps=20), progress=False)
    with open_video(tmp_path / "up" / report.results[0].output, "pyav") as video:
        indices = [read_frame_index(f) for f in video.get_frames(range(video.num_frames))]
    assert len(indices) == 40 and indices == sorted(indices) and indices[::2] == list(CLIP_FRAMES)


def test_keyframe_interval_is_the_gop(indexed, tmp_path):
    import av

    rows = [r for r in read_manifest(indexed / "manifest.csv") if r.status == "ok"][:1]
    report = resize_all(rows, tmp_path, ResizeOptions(short_side=48, gop=4), progress=False)
    with av.open(str(tmp_path / report.results[0].output)) as container:
        keys = [i for i, p in enumerate(container.demux(container.streams.video[0])) if p.is_keyframe]
    assert keys == [0, 4, 8, 12, 16]
