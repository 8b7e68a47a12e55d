"""Resize throughput on synthetic clips, extrapolated to 10k videos (the numbers in README.md).

    python -m stvit_video.bench.encode [--clips 8] [--size 340x256] [--seconds 10] [--fps 30]
                                  [--short-side 256] [--gop 16] [--workers 1]

Writes ``--clips`` textured synthetic clips (the mini-Kinetics renderer at the given size:
a panning noise texture and moving shapes, so they do not compress unrealistically well), runs
``resize`` on them and reports per video: wall and CPU seconds, output MB, and the time and disk
that 10,000 such videos would take; the index probe and verify cost per video; and the decode
of random 32 x 2 training clips with each decoder, the cost that the keyframe interval
(``--gop``) controls.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from data_prep.encode import EncoderSettings, H264Writer
from data_prep.manifest import ManifestRow
from data_prep.probe import probe_video
from data_prep.resize import DEFAULT_GOP, DEFAULT_SHORT_SIDE, ResizeOptions, resize_all
from data_prep.synthetic import CLASSES, render_clip
from data_prep.verify import verify_outputs

__all__ = ["main"]


def _cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _write_raw(folder: Path, clips: int, width: int, height: int, frames: int, fps: int) -> list[ManifestRow]:
    rows = []
    for i in range(clips):
        label = CLASSES[i % len(CLASSES)]
        video = render_clip(label, np.random.default_rng([7, i]), width=width, height=height, frames=frames, fps=fps)
        path = folder / f"clip{i:03d}_000000_{frames // fps:06d}.mp4"
        # raw like a YouTube download: x264 default keyframe interval, good quality
        with H264Writer(path, width=width, height=height, fps=Fraction(fps),
                        settings=EncoderSettings(crf=18, preset="veryfast")) as writer:
            for frame in video:
                writer.write(frame)
        probe = probe_video(path)
        rows.append(ManifestRow(str(path), label, "train", f"clip{i:03d}", 0, frames / fps, False, probe.duration,
                                probe.fps, probe.frames, probe.width, probe.height, "ok", "", "benchmark"))
    return rows


def _decode_ms(paths: list[Path], backend: str, num_frames: int = 32, rate: int = 2, repeats: int = 5) -> float:
    """Median ms to open a video and decode one random ``num_frames x rate`` clip (training's access)."""
    import torch

    from stvit_video.datasets.clip_sampling import ClipSpec, random_clip
    from stvit_video.datasets.decoder import open_video

    spec = ClipSpec(num_frames, rate, target_fps=0)  # raw frames, as the Kinetics recipe samples
    generator = torch.Generator().manual_seed(0)
    times = []
    for path in paths * repeats:
        start = time.perf_counter()
        with open_video(path, backend) as video:
            video.get_frames(random_clip(spec, video.num_frames, video.fps, generator).indices)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", default="340x256")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE)
    parser.add_argument("--gop", type=int, default=DEFAULT_GOP)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mbtree", action="store_true", help="x264 macroblock tree on (not deterministic)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = _write_raw(tmp / "raw", args.clips, width, height, args.seconds * args.fps, args.fps)
        raw_mb = sum(Path(r.path).stat().st_size for r in rows) / len(rows) / 1e6
        options = ResizeOptions(short_side=args.short_side, gop=args.gop, preset=args.preset, mbtree=args.mbtree)
        cpu, wall = _cpu_seconds(), time.perf_counter()
        report = resize_all(rows, tmp / "out", options, workers=args.workers, progress=False)
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        outputs = [tmp / "out" / r.output for r in report.results if r.status == "encoded"]
        if len(outputs) != len(rows):
            print(f"benchmark: {len(rows) - len(outputs)} clips failed: {report.results}")
            return 1
        out_mb = sum(p.stat().st_size for p in outputs) / len(outputs) / 1e6
        n = len(outputs)
        print(f"clips: {n} x {args.size}, {args.seconds} s at {args.fps} fps, raw {raw_mb:.2f} MB/video")
        print(f"resize: short side {args.short_side}, gop {args.gop}, preset {args.preset}, "
              f"mbtree {'on' if args.mbtree else 'off'}, {args.workers} worker(s)")
        print(f"  {n / wall:.2f} videos/s wall, {cpu / n:.2f} CPU s/video, {out_mb:.2f} MB/video")
        print(f"  per 10k videos: {10_000 * cpu / 3600 / n:.1f} CPU hours "
              f"(= {10_000 * cpu / 3600 / n / 16:.2f} h on 16 cores), {10_000 * out_mb / 1000:.1f} GB")
        start = time.perf_counter()
        for row in rows:
            probe_video(row.path, decode_first=True)
        probe_ms = 1000 * (time.perf_counter() - start) / n
        import stvit_video.datasets.decoder  # noqa: F401  (its torch import is not per-video cost)

        start = time.perf_counter()
        verify_outputs(rows, tmp / "out", backend="decord", workers=1, progress=False)
        verify_ms = 1000 * (time.perf_counter() - start) / n
        print(f"  index probe {probe_ms:.1f} ms/video, verify (decord) {verify_ms:.1f} ms/video "
              f"(one process): {10_000 * (probe_ms + verify_ms) / 3.6e6:.2f} CPU hours per 10k")
        for backend in ("decord", "pyav"):
            print(f"  decode one random 32x2 clip ({backend}, median of {5 * n}): {_decode_ms(outputs, backend):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
