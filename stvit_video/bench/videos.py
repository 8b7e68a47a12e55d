"""Small real video files for tests and benchmarks, written with PyAV (no ffmpeg binary).

Every frame carries its own index, so a test can tell exactly which frames a decoder
returned: the top half of the frame is a 2 x 8 grid of black/white cells holding the 16 bits
of the index (row-major, most significant bit first); the bottom half is a colour ramp that
makes the colour conversion of the decoders matter. :func:`read_frame_index` reads the index
back from a decoded frame, also after lossy h264 (the cells are large and saturated).

Codecs: ``"h264"`` is libx264 in yuv420p (what Kinetics videos look like; lossy);
``"lossless"`` is libx264rgb with crf 0 in rgb24, so decoded frames equal the written ones
bit for bit and two decoders can be compared exactly.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["VideoSpec", "frame_pattern", "read_frame_index", "write_video", "INDEX_BITS"]

# Bits of the frame index drawn in each frame (2 rows x 8 columns of cells).
INDEX_BITS = 16
_ROWS, _COLS = 2, 8

CODECS = {
    # name: (encoder, stream pixel format, encoder options)
    "h264": ("libx264", "yuv420p", {"preset": "ultrafast", "crf": "18"}),
    "lossless": ("libx264rgb", "rgb24", {"preset": "ultrafast", "crf": "0"}),
}


class VideoSpec(NamedTuple):
    """What :func:`write_video` writes.

    ``fps`` may be a ``Fraction`` (``Fraction(30000, 1001)`` for 29.97 fps). ``gop`` is the
    keyframe interval in frames (short GOPs make seeking cheap, as recommended for training
    data; x264's default is 250). ``faststart`` moves the index (moov atom) to the front of
    the file, so a file cut short still opens and fails in the middle of the stream instead.
    ``bframes`` > 0 lets x264 use B-frames, so decode order differs from presentation order
    (as in most camera and YouTube h264). ``texture`` adds a fixed noise texture scrolling 2
    pixels per frame to the bottom half: flat synthetic frames compress to almost nothing and
    decode unrealistically fast, which would flatter a benchmark.
    """

    width: int = 64
    height: int = 48
    num_frames: int = 60
    fps: int | Fraction = 30
    codec: str = "h264"
    audio: bool = False
    gop: int = 12
    faststart: bool = False
    texture: bool = False
    bframes: int = 0


def frame_pattern(index: int, height: int, width: int) -> np.ndarray:
    """The frame number ``index`` of a synthetic video: uint8 (H, W, 3) RGB."""
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    frame = np.empty((height, width, 3), dtype=np.uint8)
    top = height // 2
    bits = [(index >> (INDEX_BITS - 1 - b)) & 1 for b in range(INDEX_BITS)]
    for b, bit in enumerate(bits):
        r, c = divmod(b, _COLS)
        y0, y1 = r * top // _ROWS, (r + 1) * top // _ROWS
        x0, x1 = c * width // _COLS, (c + 1) * width // _COLS
        frame[y0:y1, x0:x1] = 255 if bit else 0
    ys, xs = np.mgrid[0 : height - top, 0:width]
    frame[top:, :, 0] = (xs * 255 // max(width - 1, 1)).astype(np.uint8)
    frame[top:, :, 1] = (ys * 255 // max(height - top - 1, 1)).astype(np.uint8)
    frame[top:, :, 2] = (index * 7) % 256
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Read the index drawn by :func:`frame_pattern` from a decoded uint8 (H, W, 3) frame.

    Only the centre of each cell is read, so blurred cell borders (lossy codecs, scaling)
    do not matter.
    """
    height, width = frame.shape[:2]
    top = height // 2
    luma = frame.astype(np.float32).mean(axis=2)
    index = 0
    for b in range(INDEX_BITS):
        r, c = divmod(b, _COLS)
        y0, y1 = r * top // _ROWS, (r + 1) * top // _ROWS
        x0, x1 = c * width // _COLS, (c + 1) * width // _COLS
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        cell = luma[max(cy - 1, y0) : cy + 1, max(cx - 1, x0) : cx + 1]
        index = (index << 1) | int(cell.mean() > 127)
    return index


def write_video(path: str | Path, spec: VideoSpec | None = None) -> Path:
    """Write an mp4 file whose frame ``i`` is :func:`frame_pattern` (i); return its path.

    ``spec`` defaults to ``VideoSpec()``. With ``spec.audio`` a mono AAC stream (a 440 Hz
    tone) as long as the video is muxed too, as in most Kinetics files.
    """
    import av  # imported here: only tests and benchmarks write videos

    spec = VideoSpec() if spec is None else spec

    if spec.codec not in CODECS:
        raise ValueError(f"codec {spec.codec!r}: use one of {', '.join(CODECS)}")
    if spec.width % 2 or spec.height % 2:
        raise ValueError(f"{spec.width}x{spec.height}: h264 needs even width and height")
    encoder, pix_fmt, options = CODECS[spec.codec]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = Fraction(spec.fps)
    container_options = {"movflags": "faststart"} if spec.faststart else {}
    with av.open(str(path), mode="w", options=container_options) as container:
        video = container.add_stream(encoder, rate=fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, pix_fmt
        video.options = {**options, "g": str(spec.gop), "bf": str(spec.bframes), "threads": "1"}
        audio = container.add_stream("aac", rate=16000, layout="mono") if spec.audio else None
        texture = _texture(spec.height - spec.height // 2, spec.width) if spec.texture else None
        for i in range(spec.num_frames):
            image = frame_pattern(i, spec.height, spec.width)
            if texture is not None:
                moved = np.roll(texture, 2 * i, axis=1)
                image[spec.height // 2 :] = np.clip(image[spec.height // 2 :] + moved, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            _write_tone(av, container, audio, seconds=float(spec.num_frames / fps))
    return path


def _texture(height: int, width: int) -> np.ndarray:
    """int16 (H, W, 3) noise in [-40, 40], blurred a little so it looks like detail, not snow."""
    noise = np.random.default_rng(0).integers(-60, 61, size=(height, width, 3)).astype(np.float32)
    blurred = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1) + np.roll(noise, (1, 1), (0, 1))) / 4
    return np.clip(blurred, -40, 40).astype(np.int16)


def _write_tone(av, container, stream, seconds: float) -> None:
    rate, chunk = stream.rate, 1024  # AAC frames hold 1024 samples
    samples = int(seconds * rate)
    t = np.arange(samples, dtype=np.float32) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    for start in range(0, samples, chunk):
        part = tone[start : start + chunk][None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
