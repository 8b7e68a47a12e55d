"""Prediction on video files from a trainer checkpoint: the same scores as the multi-view tester,
class names from the checkpoint, failed and missing files named, the command line."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stvit_video.engine.predict import find_videos, predict_videos
from stvit_video.predict_cli import main as predict_main
from stvit_video.utils.errors import DataError

from tests.helpers.colour_data import CLASSES


def _test_videos(data: Path) -> tuple[list[Path], list[int]]:
    rows = [line.rsplit(" ", 1) for line in (data / "test.csv").read_text().splitlines()]
    return [data / path for path, _ in rows], [int(label) for _, label in rows]


def test_predictions_equal_the_multi_view_tester(colour_data, trained_and_tested):
    videos, labels = _test_videos(colour_data)
    results = predict_videos(trained_and_tested / "checkpoints/best.pyth", videos, topk=3, device="cpu")
    saved = np.load(trained_and_tested / "eval/results.npz")
    assert saved["logits"].shape[1] == 6  # the checkpoint's protocol: 2 clips x 3 crops
    z = saved["logits"] - saved["logits"].max(-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    expected = probs.mean(1)  # every view decoded: the mean of the 6 views' softmax
    for r, want, label in zip(results, expected, labels):
        assert r.views == 6 and r.error is None
        assert [c.name for c in r.top] == [CLASSES[i] for i in np.argsort(-want, kind="stable")]
        np.testing.assert_allclose([c.score for c in r.top], np.sort(want)[::-1], rtol=1e-5, atol=1e-6)
    top1 = np.mean([r.top[0].class_id == label for r, label in zip(results, labels)])
    assert top1 == np.mean(expected.argmax(1) == np.array(labels))


def test_fewer_views_a_corrupt_file_and_missing_inputs(colour_data, trained_and_tested, tmp_path):
    good = _test_videos(colour_data)[0][0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes()[:200])  # the header survives, the stream does not
    results = predict_videos(trained_and_tested / "checkpoints/best.pyth", [good, broken], topk=1, clips=1,
                             crops=1, device="cpu")
    assert results[0].views == 1 and len(results[0].top) == 1 and results[0].error is None
    assert results[1].top == () and results[1].views == 0 and results[1].error  # the decoder's reason
    with pytest.raises(DataError, match="no such video file: .*nope.mp4"):
        predict_videos(trained_and_tested / "checkpoints/best.pyth", [good, tmp_path / "nope.mp4"])
    with pytest.raises(DataError, match="no such file or folder: .*absent"):
        find_videos([tmp_path / "absent"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no video files"):
        find_videos([tmp_path / "empty"])


def test_command_line_prints_names_writes_json_and_exit_codes(colour_data, trained_and_tested, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    for video in _test_videos(colour_data)[0][:2]:
        shutil.copy(video, folder / video.name)
    out = tmp_path / "pred.json"
    ckpt = str(trained_and_tested / "checkpoints/best.pyth")
    assert predict_main([ckpt, str(folder), "--views", "1x3", "--topk", "2", "--json", str(out), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("(3 views)" in line for line in lines)
    assert any(name in lines[0] for name in CLASSES)
    rows = json.loads(out.read_text())
    assert [Path(r["video"]).name for r in rows] == sorted(p.name for p in folder.iterdir())
    assert all(len(r["top"]) == 2 and r["error"] is None for r in rows)
    (folder / "bad.mp4").write_bytes(b"not a video")
    assert predict_main([ckpt, str(folder), "--device", "cpu"]) == 1  # one file could not be decoded
    assert "bad.mp4: could not be decoded:" in capsys.readouterr().out
    assert predict_main([str(tmp_path / "none.pyth"), str(folder)]) == 2
    assert "error: checkpoint file" in capsys.readouterr().err
    # impossible views are one error line and exit 2, as every bad input
    for views, message in (("4by3", "--views '4by3': use CLIPSxCROPS"), ("4x2", "4x2 views: a clip gives 1 or 3 crops"),
                           ("0x3", "--views '0x3'")):
        assert predict_main([ckpt, str(folder), "--views", views]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
