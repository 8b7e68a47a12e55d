import numpy as np
import pytest

import os

from stvit_video.datasets import decoder
from stvit_video.datasets.decoder import BACKENDS, VideoOpenError, open_video
from stvit_video.bench.videos import frame_pattern, read_frame_index
from stvit_video.utils.errors import DataError

GOOD_NAMES = ["lossless", "h264", "audio", "short", "tiny", "fps25", "fps2997"]

INDICES = [7, 0, 3, 3, 21, 44]  # unordered, repeated, spread over several GOPs


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", GOOD_NAMES)
def test_frame_count_fps_and_frames(videos, good_specs, backend, name):
    spec = good_specs[name]
    with open_video(videos[name], backend) as video:
        assert video.num_frames == spec.num_frames
        assert video.fps == pytest.approx(float(spec.fps), rel=1e-9)
        indices = [i for i in INDICES if i < spec.num_frames] + [spec.num_frames - 1]
        frames = video.get_frames(indices)
    assert frames.shape == (len(indices), spec.height, spec.width, 3) and frames.dtype == np.uint8
    assert [read_frame_index(f) for f in frames] == indices
    if spec.codec == "lossless":
        expected = np.stack([frame_pattern(i, spec.height, spec.width) for i in indices])
        np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_backends_agree(videos, good_specs, name):
    n = good_specs[name].num_frames
    indices = np.arange(0, n, 3).tolist() + [n - 1, 0]
    with open_video(videos[name], "decord") as a, open_video(videos[name], "pyav") as b:
        fa, fb = a.get_frames(indices), b.get_frames(indices)
    if good_specs[name].codec == "lossless":
        np.testing.assert_array_equal(fa, fb)
    else:  # same FFmpeg decoder underneath; allow for colour-conversion rounding
        diff = np.abs(fa.astype(np.int16) - fb.astype(np.int16))
        assert diff.max() <= 2 and diff.mean() < 0.5


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name, reason", [
    ("missing", "does not exist"),
    ("empty", "is empty"),
    ("garbage", "cannot open"),
    ("truncated", "cannot open"),
])
def test_unopenable_files_raise_a_permanent_error_with_path(videos, backend, name, reason):
    with pytest.raises(VideoOpenError) as info:  # a DataError that retrying cannot fix
        open_video(videos[name], backend)
    assert isinstance(info.value, DataError)
    assert str(videos[name]) in str(info.value) and reason in str(info.value)
    assert f"decoder {backend}" in str(info.value)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_error_in_the_middle_of_the_stream(videos, backend):
    path = videos["corrupt_mid"]
    with open_video(path, backend) as video:  # the index is intact: opening works
        assert video.num_frames == 60
        with pytest.raises(DataError) as info:
            video.get_frames(range(60))
    assert str(path) in str(info.value) and "cannot decode frames" in str(info.value)
    assert not isinstance(info.value, VideoOpenError)  # another clip may decode: retryable
    assert info.value.__cause__ is not None  # chained from the backend's exception
    if backend == "decord":
        import decord

        assert isinstance(info.value.__cause__, decord.DECORDError)  # not a RuntimeError


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_out_of_range_index_is_a_bug_not_a_data_error(videos, backend):
    with open_video(videos["lossless"], backend) as video:
        with pytest.raises(IndexError, match=r"outside \[0, 60\)"):
            video.get_frames([0, 60])


def test_unknown_backend():
    with pytest.raises(ValueError, match="decord, pyav"):
        open_video("x.mp4", "opencv")


def test_no_global_decord_bridge(videos):
    import decord

    import stvit_video.datasets  # noqa: F401
    from stvit_video.compat import apply

    apply()  # as our transforms do before importing pytorchvideo
    import pytorchvideo.transforms  # noqa: F401  (used by our transforms)

    with open_video(videos["h264"], "decord") as video:
        video.get_frames([0])
    assert decord.bridge._CURRENT_BRIDGE.type == "native"


def test_decord_result_survives_a_bridge_set_by_other_code(videos):
    import decord

    decord.bridge.set_bridge("torch")
    try:
        with open_video(videos["lossless"], "decord") as video:
            frames = video.get_frames([5])
    finally:
        decord.bridge.set_bridge("native")
    assert isinstance(frames, np.ndarray) and read_frame_index(frames[0]) == 5


def test_decord_open_failure_prints_nothing_once_quieted(videos, capfd, monkeypatch):
    with pytest.raises(VideoOpenError):
        open_video(videos["garbage"], "decord")
    loud = capfd.readouterr().err
    assert "ERROR opening" in loud and str(videos["garbage"]) in loud  # decord's C++ line, and FFmpeg's
    monkeypatch.setattr(decoder, "_capture_open_stderr", True)  # what quiet_native_logging sets up
    with pytest.raises(VideoOpenError, match="cannot open"):  # the reason is still in the error
        open_video(videos["garbage"], "decord")
    with open_video(videos["h264"], "decord") as video:
        assert video.num_frames == 90
    assert capfd.readouterr().err == ""


def test_captured_native_text_is_replayed_when_the_call_succeeds(capfd):
    with decoder._stderr_dropped_on_error(True):
        os.write(2, b"kept\n")
    with pytest.raises(RuntimeError):
        with decoder._stderr_dropped_on_error(True):
            os.write(2, b"dropped\n")
            raise RuntimeError("open failed")
    assert capfd.readouterr().err == "kept\n"


def test_quiet_native_logging_knows_the_backends():
    with pytest.raises(ValueError, match="decord, pyav"):
        decoder.quiet_native_logging("opencv")
