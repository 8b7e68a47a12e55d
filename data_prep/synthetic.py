"""Built-in mini-Kinetics: a small Kinetics-shaped data set that only motion tells apart.

Writes real h264 mp4 files and official-format annotation CSVs in the CVDF layout::

    DIR/annotations/{train,val,test}.csv   label,youtube_id,time_start,time_end,split,is_cc
    DIR/raw/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4

so that ``python -m data_prep all --annotations DIR/annotations --raw DIR/raw --out OUT``
prepares it exactly like Kinetics (time_start = 0 and the raw file holds the whole clip).

Each clip shows an *actor* (a "lollipop": a disk with a bar and a knob) over a panning noise
texture with distractor disks and squares drifting in random directions. The eight classes
come in four **time-reversal pairs** (playing a clip backwards gives its partner):

    moving up / moving down                            constant vertical speed
    moving left / moving right                         constant horizontal speed
    rotating clockwise / rotating counterclockwise     constant angular speed (as seen on screen)
    growing / shrinking                                size ramping x2.3 over the clip

A horizontal flip swaps left with right and clockwise with counterclockwise, so train on these
classes with ``DATA.RANDOM_FLIP False`` (as ``--cfg demo`` does, and as Something-Something
models are trained).

Why one frame is not enough: the actor lives on a torus (the central square "stage" of the
frame, wrapping at its edges), so its position is uniform at every frame, including the first;
its orientation is uniform; colours, background and distractors are drawn from the same
distributions for every class, and so is its aspect ratio; and the size of a frame drawn at a
random time has the same distribution in every class (the scaling classes sweep the range that
the other classes draw a fixed value from). Reversing a clip maps each class onto its partner (the
background and distractor directions are uniform, so their reversal has the same
distribution), so even the *unordered set* of a clip's frames cannot tell the partners apart:
a model that sees shuffled frames is capped at 50% top-1, while the temporal order tells
every class. (First-order motions, each visible at every edge of the actor: an earlier set
with accelerating / decelerating and stretching / squashing pairs reached only 76% top-1 with
the CPU demo's model in its budget, against > 90% for this one.)

Motion is given per second and in stage sides (the stage is the central min(H, W) square),
so ``--size`` and ``--fps`` keep the look of the motion. Defaults: see :class:`Scene`.

Deterministic: every clip draws from its own generator seeded by (seed, split, index), so
the frames are the same bytes for the same seed whatever the number of workers, and so are
the files (single-threaded x264 without macroblock tree, see :mod:`data_prep.encode`).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from data_prep.annotations import Annotation, clip_stem, write_annotation_csv
from data_prep.encode import EncoderSettings, H264Writer
from data_prep.parallel import run_parallel

__all__ = ["CLASSES", "SPLIT_FILES", "ClipPlan", "Scene", "SyntheticReport", "SyntheticSpec", "generate",
           "plan_clips", "raw_path", "render_clip", "render_planned_clip"]

# class name -> (kind, sign): vertical: +1 = down (image y points down); horizontal: +1 = right;
# rotate: +1 = clockwise on screen (the angle grows from +x towards +y, which points down);
# scale: +1 = growing, the size ramp spans the whole clip.
_MOTIONS: dict[str, tuple[str, int]] = {
    "moving up": ("vertical", -1),
    "moving down": ("vertical", 1),
    "moving left": ("horizontal", -1),
    "moving right": ("horizontal", 1),
    "rotating clockwise": ("rotate", 1),
    "rotating counterclockwise": ("rotate", -1),
    "growing": ("scale", 1),
    "shrinking": ("scale", -1),
}
# Class names in id order (alphabetical, the Kinetics convention).
CLASSES: tuple[str, ...] = tuple(sorted(_MOTIONS))

# split -> annotation file name and the value of its `split` column (official Kinetics style)
SPLIT_FILES = {"train": ("train.csv", "train"), "val": ("val.csv", "val"), "test": ("test.csv", "test")}


@dataclass(frozen=True)
class Scene:
    """How a clip looks and moves. Lengths are fractions of the stage side, speeds per second."""

    actor_size: tuple[float, float] = (0.15, 0.35)  # bar length R: log-uniform; the growth ramp
    actor_speed: tuple[float, float] = (0.30, 0.45)  # translation, stage sides per second
    turn_speed: tuple[float, float] = (0.25, 0.35)  # rotation, turns per second
    stretch: float = 2.5  # aspect ratio (height / width) from 1/stretch to stretch: log-uniform
    outline: float = 0.015  # dark outline width of the actor (keeps it visible on any colour)
    background_speed: tuple[float, float] = (0.0, 0.10)  # pan of the texture, stage sides/s
    texture_scale: float = 1 / 24  # Gaussian sigma of the background noise
    texture_contrast: tuple[float, float] = (10.0, 22.0)  # std of the texture, grey levels
    num_distractors: int = 2
    distractor_size: tuple[float, float] = (0.05, 0.08)  # radius
    distractor_speed: tuple[float, float] = (0.05, 0.30)  # stage sides per second


@dataclass(frozen=True)
class SyntheticSpec:
    """The data set: frame size, clip length, clips per class, seed.

    Defaults: 128x96 (4:3 like Kinetics; small enough that a CPU demo trains in minutes, and
    a short side of 96 leaves room to resize to 64-96; the actor stays in the central 96x96
    square, so centre crops keep it), 45 frames at 15 fps = 3.0 s (a 16 x 2 clip spans 2.1 s,
    so clips still differ in time), 80 training clips per class and 20 each for val and test:
    960 clips, about 60 CPU seconds. Why 80: on the earlier class set a small 3D CNN
    trained 24 epochs on CPU reached 98.8% 3-clip val top-1 with 80 per class but 82.5%
    with 40; the CPU demo (``--cfg demo``) trains on these 640 clips.
    """

    width: int = 128
    height: int = 96
    frames: int = 45
    fps: int = 15
    per_class: int = 80  # training clips per class; val and test get per_class // 4 (>= 1) each
    seed: int = 0
    scene: Scene = field(default_factory=Scene)

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 16:
            raise ValueError(f"size {self.width}x{self.height}: use even sizes, at least 16x16")
        if self.frames < 2 or self.fps <= 0 or self.per_class < 1:
            raise ValueError(f"frames {self.frames}, fps {self.fps}, per_class {self.per_class}: "
                             "need frames >= 2, fps > 0, per_class >= 1")

    def clips_per_class(self, split: str) -> int:
        return self.per_class if split == "train" else max(1, self.per_class // 4)

    @property
    def duration(self) -> float:
        return self.frames / self.fps


class ClipPlan(NamedTuple):
    """One clip to write: where, its class and its seed."""

    split: str
    index: int
    label: str
    youtube_id: str
    time_end: int


class SyntheticReport(NamedTuple):
    """What :func:`generate` wrote."""

    root: Path
    clips: dict[str, int]  # split -> clips
    seconds: float


# --------------------------------------------------------------------------------------------
# Scene rendering (pure numpy)

def _wrap(delta: np.ndarray, period: float) -> np.ndarray:
    """Shortest signed difference on a circle of length ``period``."""
    return (delta + period / 2) % period - period / 2


def _coverage(distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance in pixels (1 px ramp)."""
    return np.clip(0.5 - distance, 0.0, 1.0)


def _paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    image += alpha[..., None] * (colour - image)


def _colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """A random RGB colour (float32 0..255) with uniform hue."""
    h, s, v = rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return (255 * rgb).astype(np.float32)


class _Background:
    """Smooth periodic noise, panned with sub-pixel accuracy by a Fourier phase shift."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, side: float, scene: Scene) -> None:
        # mostly a luminance texture, with some colour in it
        noise = rng.standard_normal((height, width, 1)) + 0.5 * rng.standard_normal((height, width, 3))
        fy = np.fft.fftfreq(height)[:, None, None]
        fx = np.fft.rfftfreq(width)[None, :, None]
        sigma = scene.texture_scale * side
        self.coeffs = np.fft.rfft2(noise, axes=(0, 1)) * np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
        self.coeffs /= np.fft.irfft2(self.coeffs, s=(height, width), axes=(0, 1)).std() + 1e-12
        self.fy, self.fx, self.shape = fy, fx, (height, width)
        self.base = rng.uniform(60, 160, size=3).astype(np.float32)
        self.contrast = np.float32(rng.uniform(*scene.texture_contrast))
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*scene.background_speed) * side
        self.offset = rng.uniform(0, 1, size=2) * (height, width)
        self.velocity = speed * np.array([np.sin(angle), np.cos(angle)])  # (dy, dx) per second

    def frame(self, seconds: float) -> np.ndarray:
        """float32 (H, W, 3) at time ``seconds``."""
        dy, dx = self.offset + self.velocity * seconds
        phase = np.exp(-2j * np.pi * (self.fy * dy + self.fx * dx))
        texture = np.fft.irfft2(self.coeffs * phase, s=self.shape, axes=(0, 1))
        return (self.base + self.contrast * texture).astype(np.float32)


class _Distractor(NamedTuple):
    x: float
    y: float
    vx: float
    vy: float
    radius: float
    square: bool
    colour: np.ndarray


def _distractor(rng: np.random.Generator, height: int, width: int, side: float, scene: Scene) -> _Distractor:
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*scene.distractor_speed) * side
    return _Distractor(rng.uniform(0, width), rng.uniform(0, height), speed * np.cos(angle), speed * np.sin(angle),
                       rng.uniform(*scene.distractor_size) * side, bool(rng.integers(2)),
                       _colour(rng, (0.2, 0.8), (0.35, 0.95)))


class _ActorTrack(NamedTuple):
    """Per-frame actor state on the stage: centre (x, y) px, angle (rad), bar length R px,
    aspect ratio (height / width stretch of the whole shape)."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    length: np.ndarray
    aspect: np.ndarray
    colour: np.ndarray


def _actor_track(label: str, rng: np.random.Generator, seconds: np.ndarray, duration: float, side: float,
                 scene: Scene) -> _ActorTrack:
    """Sample the actor of one clip of class ``label``; every class draws the same numbers.

    ``duration``: seconds from the first to the last frame (the span of the ramps).
    """
    kind, sign = _MOTIONS[label]
    x0, y0 = rng.uniform(0, side, size=2)
    angle = np.full(len(seconds), rng.uniform(0, 2 * np.pi))
    log_min, log_max = (math.log(s * side) for s in scene.actor_size)
    size, aspect = rng.uniform(0, 1, size=2)  # where in the ranges (log); the size ramps when scaling
    speed = rng.uniform(*scene.actor_speed) * side
    turns = rng.uniform(*scene.turn_speed)
    colour = _colour(rng, (0.6, 1.0), (0.8, 1.0))
    size, aspect = np.full(len(seconds), size), np.full(len(seconds), aspect)
    ramp = seconds / duration if sign > 0 else 1 - seconds / duration  # 0 -> 1 over the clip (or back)
    x, y = np.full(len(seconds), x0), np.full(len(seconds), y0)
    if kind == "vertical":
        y = (y0 + sign * speed * seconds) % side
    elif kind == "horizontal":
        x = (x0 + sign * speed * seconds) % side
    elif kind == "rotate":
        angle = angle + sign * 2 * np.pi * turns * seconds
    else:  # scale
        size = ramp
    length = np.exp(log_min + size * (log_max - log_min))
    log_stretch = math.log(scene.stretch)
    return _ActorTrack(x, y, angle, length, np.exp(log_stretch * (2 * aspect - 1)), colour)


def _actor_distance(dx: np.ndarray, dy: np.ndarray, angle: float, length: float, aspect: float) -> np.ndarray:
    """Signed distance (px, approximate when stretched) to the lollipop: hub disk + bar + knob
    pointing along ``angle``, then stretched by sqrt(aspect) vertically and 1/sqrt(aspect)
    horizontally (area kept)."""
    stretch = math.sqrt(aspect)
    dx, dy = dx * stretch, dy / stretch  # undo the stretch: back to the unstretched shape
    u = dx * math.cos(angle) + dy * math.sin(angle)  # along the bar
    w = -dx * math.sin(angle) + dy * math.cos(angle)  # across it
    radius = np.sqrt(u * u + w * w)
    hub = radius - 0.45 * length
    along = np.clip(u, 0.0, length)
    bar = np.sqrt((u - along) ** 2 + w * w) - 0.16 * length
    knob = np.sqrt((u - length) ** 2 + w * w) - 0.26 * length
    return np.minimum(np.minimum(hub, bar), knob) * min(stretch, 1 / stretch)


def _disk_distance(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    return np.sqrt(dx * dx + dy * dy) - radius


def _square_distance(dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    return np.maximum(np.abs(dx), np.abs(dy)) - 0.9 * radius  # 0.9: about the disk's area


def _paint_shape(image: np.ndarray, dy: np.ndarray, dx: np.ndarray, reach: float, distance,
                 colour: np.ndarray, outline: tuple[float, np.ndarray] | None = None) -> None:
    """Paint a shape given its per-row ``dy`` (H,) and per-column ``dx`` (W,) offsets from its
    centre, only on the rows and columns within ``reach`` px of it (also across a wrap)."""
    rows, cols = np.nonzero(np.abs(dy) <= reach)[0], np.nonzero(np.abs(dx) <= reach)[0]
    if rows.size == 0 or cols.size == 0:
        return
    window = np.ix_(rows, cols)
    patch = image[window]
    dist = distance(dx[cols][None, :], dy[rows][:, None])
    if outline is not None:
        width, dark = outline
        _paint(patch, _coverage(dist - width), dark)
    _paint(patch, _coverage(dist), colour)
    image[window] = patch


def render_clip(label: str, rng: np.random.Generator, *, width: int, height: int, frames: int,
                fps: float, scene: Scene | None = None) -> np.ndarray:
    """Render one clip of class ``label``.

    Returns:
        uint8 (T, H, W, 3) RGB, ``T = frames``.
    """
    if label not in _MOTIONS:
        raise ValueError(f"unknown synthetic class {label!r}; classes: {', '.join(CLASSES)}")
    scene = Scene() if scene is None else scene
    side = min(width, height)  # the actor's stage: the central side x side square
    left, top = (width - side) // 2, (height - side) // 2
    seconds = np.arange(frames) / fps
    background = _Background(rng, height, width, side, scene)
    distractors = [_distractor(rng, height, width, side, scene) for _ in range(scene.num_distractors)]
    # ramps run from the first to the last frame, so a reversed clip is exactly its partner's
    actor = _actor_track(label, rng, seconds, max(seconds[-1], 1 / fps), side, scene)
    outline = max(1.0, scene.outline * side)
    dark = np.full(3, 25.0, dtype=np.float32)
    xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    stage_x, stage_y = np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)

    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t, s in enumerate(seconds):
        image = background.frame(s)
        for d in distractors:
            shape = _square_distance if d.square else _disk_distance
            _paint_shape(image, _wrap(ys - (d.y + d.vy * s), height), _wrap(xs - (d.x + d.vx * s), width),
                         d.radius + 1, functools.partial(shape, radius=d.radius), d.colour)
        stage = image[top:top + side, left:left + side]  # a view: painting it paints the frame
        length, aspect = float(actor.length[t]), float(actor.aspect[t])
        reach = 1.26 * length * math.sqrt(max(aspect, 1 / aspect)) + outline + 1
        _paint_shape(stage, _wrap(stage_y - actor.y[t], side), _wrap(stage_x - actor.x[t], side), reach,
                     functools.partial(_actor_distance, angle=float(actor.angle[t]), length=length,
                                       aspect=aspect),
                     actor.colour, outline=(outline, dark))
        np.clip(image + 0.5, 0, 255, out=image)
        clip[t] = image.astype(np.uint8)
    return clip


# --------------------------------------------------------------------------------------------
# The data set on disk

def _youtube_id(seed: int, split: str, index: int, salt: int = 0) -> str:
    """A fake 11-character YouTube id (alphabet A-Z a-z 0-9 - _), stable for (seed, split, index)."""
    digest = hashlib.sha256(f"stvit-synthetic/{seed}/{split}/{index}/{salt}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def plan_clips(spec: SyntheticSpec) -> list[ClipPlan]:
    """Every clip of the data set, split by split; classes alternate within a split."""
    plans, seen = [], set()
    time_end = math.ceil(spec.duration)
    for split in SPLIT_FILES:
        for index in range(spec.clips_per_class(split) * len(CLASSES)):
            salt = 0
            youtube_id = _youtube_id(spec.seed, split, index)
            while youtube_id in seen:  # a collision of 66-bit hashes: never in practice
                salt += 1
                youtube_id = _youtube_id(spec.seed, split, index, salt)
            seen.add(youtube_id)
            plans.append(ClipPlan(split, index, CLASSES[index % len(CLASSES)], youtube_id, time_end))
    return plans


def _clip_rng(seed: int, plan: ClipPlan) -> np.random.Generator:
    split_number = list(SPLIT_FILES).index(plan.split)
    return np.random.default_rng([seed, split_number, plan.index])


def render_planned_clip(plan: ClipPlan, spec: SyntheticSpec) -> np.ndarray:
    """The frames of a planned clip: uint8 (T, H, W, 3); the same bytes for the same seed."""
    return render_clip(plan.label, _clip_rng(spec.seed, plan), width=spec.width, height=spec.height,
                       frames=spec.frames, fps=spec.fps, scene=spec.scene)


def raw_path(root: Path, plan: ClipPlan) -> Path:
    return root / "raw" / plan.split / f"{clip_stem(plan.youtube_id, 0, plan.time_end)}.mp4"


# Raw files: good quality, and x264's default keyframe interval (250), like YouTube downloads.
RAW_ENCODER = EncoderSettings(crf=18, preset="veryfast", gop=None)


def _write_clip(plan: ClipPlan, *, spec: SyntheticSpec, root: Path) -> str:
    frames = render_planned_clip(plan, spec)
    path = raw_path(root, plan)
    with H264Writer(path, width=spec.width, height=spec.height, fps=Fraction(spec.fps),
                    settings=RAW_ENCODER) as writer:
        for frame in frames:
            writer.write(frame)
    return str(path)


def generate(root: str | Path, spec: SyntheticSpec | None = None, *, workers: int = 1,
             progress: bool = True) -> SyntheticReport:
    """Write the data set under ``root`` (annotations/ and raw/); existing files are replaced."""
    spec = SyntheticSpec() if spec is None else spec
    root = Path(root)
    start = time.perf_counter()
    plans = plan_clips(spec)
    write = functools.partial(_write_clip, spec=spec, root=root)
    for _ in run_parallel(write, plans, workers=workers, desc="synthetic", progress=progress):
        pass
    clips: dict[str, int] = {}
    for split, (file_name, split_value) in SPLIT_FILES.items():
        rows = [Annotation(p.label, p.youtube_id, 0, p.time_end, split_value, f"{file_name}:{n + 2}")
                for n, p in enumerate(q for q in plans if q.split == split)]
        write_annotation_csv(root / "annotations" / file_name, rows)
        clips[split] = len(rows)
    return SyntheticReport(root, clips, time.perf_counter() - start)
