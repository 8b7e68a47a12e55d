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


def test_long_video_timeline_features_and_workers(colour_data, trained_and_tested, tmp_path, capsys):
    """A 6 s video of blue, red, green (2 s each): windows of 2 s every 1 s, each seen as the
    checkpoint's views inside it; the timeline follows the colours; embeddings per window."""
    from tests.helpers.colour_data import write_long_video

    long_video = write_long_video(tmp_path / "long video.mp4", [0, 2, 1])
    ckpt = str(trained_and_tested / "checkpoints/best.pyth")
    out, feats, png = tmp_path / "timeline.json", tmp_path / "emb.npy", tmp_path / "timeline.png"
    code = predict_main([ckpt, str(long_video), "--window", "2", "--stride", "1", "--json", str(out), "--features",
                         str(feats), "--timeline", str(png), "--device", "cpu", "--workers", "1", "--batch", "4"])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [(r["start"], r["end"]) for r in rows] == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
    assert all(r["views"] == 6 for r in rows)
    # the windows that hold one colour only are that colour
    assert [rows[i]["top"][0]["name"] for i in (0, 2, 4)] == ["blue things", "red things", "green things"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith(f"{long_video} [1.0-3.0 s]: ")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    emb = np.load(feats)
    index = json.loads(feats.with_suffix(".json").read_text())
    assert emb.shape == (5, 128) and emb.dtype == np.float32 and index["shape"] == [5, 128]
    assert [(r["start"], r["end"]) for r in index["rows"]] == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
    # the classifier is linear: applied to a window's mean embedding it gives the mean of its
    # views' logits, whose best class is the colour of a one-colour window
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    logits = emb @ state["head.fc.weight"].numpy().T + state["head.fc.bias"].numpy()
    assert [CLASSES[i] for i in logits.argmax(1)[[0, 2, 4]]] == ["blue things", "red things", "green things"]


def test_a_window_longer_than_the_video_is_the_whole_video(colour_data, trained_and_tested, caplog):
    """One window over the whole video, named in a warning, scored exactly as without windows;
    per-video features match the pooled features of the model."""
    import logging

    video = _test_videos(colour_data)[0][0]  # 8 frames at 10 fps: 0.8 s
    ckpt = trained_and_tested / "checkpoints/best.pyth"
    whole = predict_videos(ckpt, [video], topk=3, device="cpu", features=True)[0]
    with caplog.at_level(logging.WARNING, logger="stvit_video"):
        logging.getLogger("stvit_video").propagate = True
        try:
            windowed = predict_videos(ckpt, [video], topk=3, device="cpu", window=5.0)
        finally:
            logging.getLogger("stvit_video").propagate = False
    assert len(windowed) == 1 and (windowed[0].start, windowed[0].end) == (0.0, 0.8)
    assert "0.80 s long, shorter than the 5 s window: one window over the whole video" in caplog.text
    assert [c.class_id for c in windowed[0].top] == [c.class_id for c in whole.top]
    np.testing.assert_allclose([c.score for c in windowed[0].top], [c.score for c in whole.top], rtol=1e-6)
    assert whole.embedding.shape == (128,) and windowed[0].embedding is None


def test_window_options_and_an_unreadable_video_among_good_ones(colour_data, trained_and_tested, tmp_path, capsys):
    ckpt = str(trained_and_tested / "checkpoints/best.pyth")
    good = str(_test_videos(colour_data)[0][0])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert predict_main([ckpt, good, str(bad), "--window", "0.4", "--device", "cpu"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{good} [0.0-0.4 s]: ") and lines[1].startswith(f"{good} [0.4-0.8 s]: ")
    assert lines[2].startswith(f"{bad}: could not be decoded: ")
    for args, message in ((["--stride", "1"], "--stride needs --window"), (["--window", "0"], "window 0 s: must be > 0"),
                          (["--timeline", str(tmp_path / "t.png")], "--timeline draws the windows of --window"),
                          (["--features", str(tmp_path / "f.txt")], "name a .npy file")):
        assert predict_main([ckpt, good, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err, err


def test_a_checkpoint_without_class_names_names_classes_by_id(colour_data, trained_and_tested, tmp_path, caplog):
    import logging

    import torch

    state = torch.load(trained_and_tested / "checkpoints/best.pyth", map_location="cpu", weights_only=False)
    state["class_names"] = None
    nameless = tmp_path / "nameless.pyth"
    torch.save(state, nameless)
    logging.getLogger("stvit_video").propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="stvit_video"):
            result = predict_videos(nameless, _test_videos(colour_data)[0][:1], topk=3, clips=1, crops=1, device="cpu")[0]
    finally:
        logging.getLogger("stvit_video").propagate = False
    assert sorted(c.name for c in result.top) == ["0", "1", "2"]
    assert [c.name for c in result.top] == [str(c.class_id) for c in result.top]
    assert "holds no class names" in caplog.text and "named by their ids 0..2" in caplog.text
