"""The built-in mini-Kinetics: deterministic, Kinetics-shaped, prepared by `all`, and motion-only."""
import itertools

import numpy as np
import pytest

from data_prep.annotations import read_annotation_csv
from data_prep.cli import main
from stvit_video.datasets.decoder import open_video
from data_prep.synthetic import (CLASSES, SyntheticSpec, generate, plan_clips, raw_path, render_clip,
                                 render_planned_clip)

TINY = SyntheticSpec(width=48, height=32, frames=8, fps=8, per_class=1, seed=5)


def test_classes_are_sorted_kinetics_style_names():
    assert list(CLASSES) == sorted(CLASSES) and len(CLASSES) == 8
    assert "moving up" in CLASSES and "rotating counterclockwise" in CLASSES  # names with spaces


def test_same_seed_same_frames_other_seed_other_frames():
    plan = plan_clips(TINY)[3]
    a, b = render_planned_clip(plan, TINY), render_planned_clip(plan, TINY)
    assert a.dtype == np.uint8 and a.shape == (8, 32, 48, 3)
    assert a.tobytes() == b.tobytes()
    other = SyntheticSpec(width=48, height=32, frames=8, fps=8, per_class=1, seed=6)
    assert render_planned_clip(plan, other).tobytes() != a.tobytes()
    assert [p.youtube_id for p in plan_clips(TINY)] != [p.youtube_id for p in plan_clips(other)]


def test_generate_is_deterministic_and_its_annotations_parse_back(tmp_path):
    reports = [generate(tmp_path / name, TINY, workers=1, progress=False) for name in ("a", "b")]
    assert reports[0].clips == {"train": 8, "val": 8, "test": 8}
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 24 + 3
    # same bytes: the frames are the same and the encoder is deterministic (mbtree off, 1 thread)
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)
    plans = plan_clips(TINY)
    for plan, other in zip(plans, plans[1:] + plans[:1]):  # the file holds the seed's frames
        with open_video(raw_path(tmp_path / "a", plan), "pyav") as video:
            decoded = video.get_frames(range(TINY.frames)).astype(np.int16)
        # coding noise (4:2:0 chroma of a 48x32 colour texture) is far below another clip's distance
        assert np.abs(decoded - render_planned_clip(plan, TINY)).mean() < 10.0
        assert np.abs(decoded - render_planned_clip(other, TINY)).mean() > 15.0
    text = (tmp_path / "a" / "annotations" / "train.csv").read_text()
    assert text.startswith("label,youtube_id,time_start,time_end,split,is_cc\n") and '"moving up",' in text
    rows = read_annotation_csv(tmp_path / "a" / "annotations" / "train.csv")
    assert [r.label for r in rows] == list(CLASSES)
    assert all(len(r.youtube_id) == 11 and (r.time_start, r.time_end) == (0, 1) for r in rows)
    assert {r.split for r in read_annotation_csv(tmp_path / "a" / "annotations" / "val.csv")} == {"val"}
    for row in rows:
        assert (tmp_path / "a" / "raw" / "train" / f"{row.youtube_id}_000000_000001.mp4").is_file()


def test_all_prepares_the_synthetic_set_end_to_end(tmp_path, capsys):
    # 64x48: decord 0.6 cannot decode frames 48 px wide (DECORDArrayCopyFromTo size mismatch)
    assert main(["synthetic", "--out", str(tmp_path / "syn"), "--per-class", "1", "--size", "64x48",
                 "--frames", "8", "--fps", "8", "--workers", "1", "--no-progress"]) == 0
    assert "24 clips (train 8, val 8, test 8) of 8 classes" in capsys.readouterr().out
    out = tmp_path / "prepared"
    assert main(["all", "--annotations", str(tmp_path / "syn" / "annotations"), "--raw", str(tmp_path / "syn" / "raw"),
                 "--out", str(out), "--short-side", "48", "--workers", "1", "--no-progress"]) == 0
    assert (out / "classnames.txt").read_text().splitlines() == list(CLASSES)
    total = [line.split() for line in (out / "summary.txt").read_text().splitlines() if line.startswith("total")]
    assert total == [["total", "24", "24", "0", "24", "0", "24"]]
    for split in ("train", "val", "test"):
        lines = (out / f"{split}.csv").read_text().splitlines()
        assert sorted(int(line.rsplit(" ", 1)[1]) for line in lines) == list(range(8))
        assert all((out / line.rsplit(" ", 1)[0]).is_file() for line in lines)


# ---------------------------------------------------------------------------------------------
# One frame is not enough: single-frame statistics do not tell the classes apart, motion does.

def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Periodic box sum of radius r over the last two axes."""
    for axis in (-2, -1):
        a = sum(np.roll(a, s, axis) for s in range(-r, r + 1))
    return a


def _motion(clip: np.ndarray) -> np.ndarray:
    """Motion features from frame differences: Lucas-Kanade flow (u, v) per pixel, averaged
    with the temporal change as weight, per pair of frames; then the medians over the pairs of
    u (> 0: rightwards), v (> 0: downwards), the divergence u_x + v_y (> 0: growing) and the
    curl v_x - u_y (> 0: clockwise on screen, as y points down)."""
    grey = clip.astype(np.float32).mean(-1)
    mid, it = (grey[1:] + grey[:-1]) / 2, grey[1:] - grey[:-1]
    iy, ix = np.gradient(mid, axis=(1, 2))
    sxx, sxy, syy, sxt, syt = (_box(p, 3) for p in (ix * ix, ix * iy, iy * iy, ix * it, iy * it))
    det = sxx * syy - sxy**2 + 1e-3
    u, v = (sxy * syt - syy * sxt) / det, (sxy * sxt - sxx * syt) / det
    uy, ux = np.gradient(u, axis=(1, 2))
    vy, vx = np.gradient(v, axis=(1, 2))
    weight = _box(np.abs(it), 3)
    weight /= weight.sum(axis=(1, 2), keepdims=True)
    features = [(f * weight).sum(axis=(1, 2)) for f in (u, v, ux + vy, vx - uy)]
    return np.array([np.median(f) for f in features])


def _t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Welch t statistic of the mean difference, per column."""
    return (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))


@pytest.fixture(scope="module")
def clips_by_class():
    n = 16
    return {c: [render_clip(c, np.random.default_rng([11, k, i]), width=64, height=48, frames=16, fps=15)
                for i in range(n)] for k, c in enumerate(CLASSES)}


def test_single_frames_have_the_same_statistics_in_every_class(clips_by_class):
    worst = 0.0
    for draw in range(2):
        # per clip: mean and std of each colour channel of one frame taken at a random time
        rng = np.random.default_rng(draw)
        stats = {c: np.array([np.concatenate([f[t].mean((0, 1)), f[t].std((0, 1))])
                              for f, t in zip(clips, rng.integers(0, 16, len(clips)))])
                 for c, clips in clips_by_class.items()}
        for a, b in itertools.combinations(CLASSES, 2):
            worst = max(worst, float(np.abs(_t(stats[a], stats[b])).max()))
    assert worst < 4.0  # 336 comparisons: no difference beyond chance


@pytest.mark.parametrize("forward, backward, feature", [
    ("moving right", "moving left", 0), ("moving down", "moving up", 1), ("growing", "shrinking", 2),
    ("rotating clockwise", "rotating counterclockwise", 3),
])
def test_frame_differences_tell_each_time_reversal_pair_apart(clips_by_class, forward, backward, feature):
    a = np.array([_motion(c) for c in clips_by_class[forward]])
    b = np.array([_motion(c) for c in clips_by_class[backward]])
    assert _t(a, b)[feature] > 5.0
    # playing the clips backwards turns one class into the other
    reversed_a = np.array([_motion(c[::-1]) for c in clips_by_class[forward]])
    assert _t(reversed_a, b)[feature] == pytest.approx(0, abs=3.0)
    assert _t(a, reversed_a)[feature] > 5.0


def test_synthetic_suggests_the_next_steps_unless_a_caller_prepares_next(tmp_path, capsys):
    tiny = ["--per-class", "1", "--size", "32x32", "--frames", "4", "--workers", "1", "--no-progress"]
    assert main(["synthetic", "--out", str(tmp_path / "a"), *tiny]) == 0
    out = capsys.readouterr().out
    assert "next: python -m data_prep all" in out and "--cfg demo" in out
    assert main(["synthetic", "--out", str(tmp_path / "b"), *tiny, "--no-next-step"]) == 0
    out = capsys.readouterr().out
    assert "synthetic: 24 clips" in out and "next:" not in out and "then:" not in out
