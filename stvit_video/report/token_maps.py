"""Pictures of what a model looks at in one clip: semantic-token attention, token assignment, Grad-CAM.

The maps come from :mod:`stvit_video.engine.visualize` as a :class:`ClipMaps` (numpy only);
this module draws them (Pillow; matplotlib only for its colour maps) and lays them out as JSON:

    grid_png(maps)        PNG, one row per temporal slice of the image tokens (at most
                          ``max_rows``), columns: the frame | Grad-CAM | assignment | one column per
                          shown semantic token (its attention over the image tokens)
    animation(maps, fmt)  GIF (Pillow) or MP4 (PyAV): every frame of the clip, side by side with its
                          Grad-CAM and assignment overlays
    maps_json(maps)       the raw maps as nested lists with their shapes, for scripts

Maps are laid over the frames by stretching: a map of S slices x H' x W' covers the clip's T
frames and the whole crop evenly (frame f lies in slice floor(f S / T); each map cell covers
crop / H' pixels). Token attention and assignment are drawn blocky (nearest), Grad-CAM smooth
(bilinear), as each is meant.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

__all__ = ["ANIMATION_FORMATS", "ClassPick", "ClipMaps", "SemanticMaps", "animation", "grid_png", "maps_json",
           "shown_tokens"]

ANIMATION_FORMATS = ("gif", "mp4")
CELL = 128  # side of one picture cell in pixels
_LABEL_W = 78  # left margin for the row labels
_HEAT = 0.55  # weight of the colour map over the frame
_FONT_SIZE = 11


class ClassPick(NamedTuple):
    """A class of the model and its softmax probability on the clip."""

    class_id: int
    name: str
    score: float


@dataclass(frozen=True, eq=False)
class SemanticMaps:
    """STGM layer 2 of one unit on one clip: where each semantic token looks.

    Attributes:
        unit: index of the unit in its stage (0 = first).
        mode: "perframe" or "spatiotemporal".
        image_tokens: (D, H, W) image-token map the unit works on.
        grid: (Tg, Hg, Wg) semantic-token grid; token k is grid position k in raster order.
        attention: float32 (K, D, H, W), K = Tg*Hg*Wg: token k's attention weights (mean over
            heads) on every image token; zero outside the slices it attends (``visible``).
        visible: int (K, 2): the image-token slices [start, stop) token k attends (its own
            slice per-frame, the whole clip spatiotemporal).
        semantic_share: float32 (K,): the weight token k gives to the semantic-token keys of
            layer 2 (not image positions, so not in ``attention``); ``attention[k].sum() +
            semantic_share[k] == 1``.
        assignment: int32 (D, H, W): the token that attends most to each image token (among
            those that see it).
    """

    unit: int
    mode: str
    image_tokens: tuple[int, int, int]
    grid: tuple[int, int, int]
    attention: np.ndarray
    visible: np.ndarray
    semantic_share: np.ndarray
    assignment: np.ndarray

    @property
    def tokens_per_slice(self) -> int:
        return self.grid[1] * self.grid[2]

    def token_position(self, k: int) -> tuple[int, int, int]:
        """(tg, i, j) of token ``k`` on the grid."""
        tg, rest = divmod(int(k), self.tokens_per_slice)
        return (tg, *divmod(rest, self.grid[2]))


@dataclass(frozen=True, eq=False)
class ClipMaps:
    """Everything drawn for one clip.

    Attributes:
        video: the file.
        arch: the model's variant name.
        frames: uint8 (T, h, w, 3): the clip as the model saw it (decoded, resized, cropped).
        predicted: the top class of this clip.
        explained: the class Grad-CAM explains (the predicted one unless one was asked for).
        gradcam: float32 (S, H', W') >= 0: Grad-CAM of ``explained`` on the last-stage features.
        gradcam_layout: what the positions of ``gradcam`` are ("image tokens" or "semantic grid").
        semantic: one entry per unit (empty for a model without semantic tokens).
        notes: lines to keep with the pictures (what was left out and why).
    """

    video: str
    arch: str
    frames: np.ndarray
    predicted: ClassPick
    explained: ClassPick
    gradcam: np.ndarray
    gradcam_layout: str
    semantic: tuple[SemanticMaps, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------- #
# Drawing helpers
# ----------------------------------------------------------------------------------------- #
def _font(size: int = _FONT_SIZE):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _colour_lut(name: str = "inferno") -> np.ndarray:
    """uint8 (256, 3) colour map."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def _palette(count: int) -> np.ndarray:
    """uint8 (count, 3) distinct colours: tab20, then evenly spaced hues."""
    from matplotlib import colormaps

    base = (colormaps["tab20"](np.arange(20))[:, :3] * 255).round()
    if count <= 20:
        return base[:count].astype(np.uint8)
    from matplotlib.colors import hsv_to_rgb

    hues = (np.arange(count - 20) * 0.618034) % 1.0
    extra = hsv_to_rgb(np.stack([hues, np.full_like(hues, 0.75), np.full_like(hues, 0.9)], 1)) * 255
    return np.concatenate([base, extra.round()]).astype(np.uint8)


def _resize(values: np.ndarray, side: int, smooth: bool) -> np.ndarray:
    """float (h, w) -> float32 (side, side), nearest or bilinear."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize((side, side), Image.BILINEAR if smooth else Image.NEAREST), dtype=np.float32)


def _frame_cell(frame: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((side, side), Image.BILINEAR), dtype=np.uint8)


def _heat(cell: np.ndarray, values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Blend the colour map of ``values`` (side, side) in [0, 1] over the frame cell."""
    colours = lut[np.clip((values * 255).round(), 0, 255).astype(np.int64)]
    return ((1 - _HEAT) * cell + _HEAT * colours).round().astype(np.uint8)


def _assignment_cell(cell: np.ndarray, owners: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colour each pixel by its token (``owners`` (side, side) int), dark lines between tokens."""
    out = (0.45 * cell + 0.55 * palette[owners]).round().astype(np.uint8)
    edge = np.zeros(owners.shape, dtype=bool)
    edge[:-1] |= owners[:-1] != owners[1:]
    edge[:, :-1] |= owners[:, :-1] != owners[:, 1:]
    out[edge] = 20
    return out


def _slice_of(frame: int, frames: int, slices: int) -> int:
    """The slice of a map with ``slices`` slices that covers frame ``frame`` of ``frames``."""
    return min(frame * slices // frames, slices - 1)


def _bin(index: int, cells: int, length: int) -> tuple[int, int]:
    """The adaptive-pooling region [lo, hi) of cell ``index`` of ``cells`` along ``length``."""
    return index * length // cells, -(-(index + 1) * length // cells)


def _unit(maps: ClipMaps, unit: int) -> Optional[SemanticMaps]:
    if not maps.semantic:
        return None
    try:
        return maps.semantic[unit]
    except IndexError:
        raise ValueError(f"unit {unit}: the model has {len(maps.semantic)} semantic-token unit(s)") from None


def shown_tokens(sem: SemanticMaps, count: int) -> list[int]:
    """The ``count`` grid positions of one grid slice shown as columns (evenly spread in raster
    order); per-frame, the row's slice supplies the token, spatiotemporal the middle grid slice."""
    q = sem.tokens_per_slice
    count = min(count, q)
    if count <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, q - 1, count)})


def _token_at(sem: SemanticMaps, position: int, frame: int, frames: int) -> int:
    """The token of grid position ``position`` shown in the row of ``frame``."""
    if sem.mode == "perframe":
        tg = _slice_of(frame, frames, sem.grid[0])
    else:
        tg = sem.grid[0] // 2
    return tg * sem.tokens_per_slice + position


def _token_cell(cell: np.ndarray, sem: SemanticMaps, k: int, d: int, side: int, lut: np.ndarray) -> np.ndarray:
    """Token k's attention in image slice d over the frame cell, its pooling region boxed."""
    from PIL import Image, ImageDraw

    peak = float(sem.attention[k].max())
    values = sem.attention[k, d] / peak if peak > 0 else sem.attention[k, d]
    image = Image.fromarray(_heat(cell, _resize(values, side, smooth=False), lut))
    tg, i, j = sem.token_position(k)
    D, H, W = sem.image_tokens
    t0, t1 = _bin(tg, sem.grid[0], D)
    if t0 <= d < t1:
        (y0, y1), (x0, x1) = _bin(i, sem.grid[1], H), _bin(j, sem.grid[2], W)
        ImageDraw.Draw(image).rectangle([x0 * side // W, y0 * side // H, x1 * side // W - 1, y1 * side // H - 1],
                                        outline=(255, 255, 255))
    return np.asarray(image)


def _owners(sem: SemanticMaps, d: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(side, side) palette index of each pixel's token in image slice d, and the palette."""
    owners = sem.assignment[d] % sem.tokens_per_slice  # colour = position in its grid slice
    return _resize(owners.astype(np.float32), side, smooth=False).round().astype(np.int64), \
        _palette(sem.tokens_per_slice)


def _gradcam_cell(cell: np.ndarray, maps: ClipMaps, frame: int, side: int, lut: np.ndarray) -> np.ndarray:
    """Grad-CAM at ``frame``, scaled to [0, 1] by the clip's minimum and maximum (as Grad-CAM is shown)."""
    cam = maps.gradcam
    low, span = float(cam.min()), float(cam.max() - cam.min())
    s = _slice_of(frame, len(maps.frames), cam.shape[0])
    values = (cam[s] - low) / span if span > 0 else np.zeros_like(cam[s])
    return _heat(cell, np.clip(_resize(values, side, smooth=True), 0, 1), lut)


def _fit(draw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels in ``font``."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "\u2026"
    return text


def _title(maps: ClipMaps) -> str:
    from pathlib import Path

    p, e = maps.predicted, maps.explained
    explained = "" if e.class_id == p.class_id else f"; Grad-CAM for {e.name} ({100 * e.score:.1f}%)"
    return f"{Path(maps.video).name} ({maps.arch}): predicted {p.name} {100 * p.score:.1f}%{explained}"


# ----------------------------------------------------------------------------------------- #
# Outputs
# ----------------------------------------------------------------------------------------- #
def grid_png(maps: ClipMaps, *, tokens: int = 4, unit: int = -1, max_rows: int = 8, cell: int = CELL) -> bytes:
    """The frames x maps picture of one clip as PNG bytes.

    Rows: the first frame of every temporal slice of the image tokens (of the semantic unit, or
    of the Grad-CAM map without one), at most ``max_rows`` evenly spread. Columns: the frame;
    Grad-CAM of ``maps.explained``; with semantic tokens, the assignment of each image token to
    its strongest semantic token (colour = the token's position in its grid slice) and
    ``tokens`` token columns (:func:`shown_tokens`), each token's attention normalised to its
    own maximum, its pooling region boxed in white where it lies in the row's slice.

    Args:
        unit: which unit's tokens to draw (default the last).
    """
    from PIL import Image, ImageDraw

    sem = _unit(maps, unit)
    T = len(maps.frames)
    slices = sem.image_tokens[0] if sem is not None else maps.gradcam.shape[0]
    row_slices = sorted({int(round(x)) for x in np.linspace(0, slices - 1, min(slices, max_rows))})
    row_frames = [-(-d * T // slices) for d in row_slices]  # the first frame of each slice
    positions = shown_tokens(sem, tokens) if sem is not None else []
    columns = ["frame", f"Grad-CAM: {maps.explained.name}"]
    if sem is not None:
        columns.append("assignment")
        for q in positions:
            tg, i, j = sem.token_position(_token_at(sem, q, 0, T))
            columns.append(f"token ({i},{j})" if sem.mode == "perframe" else f"token t{tg} ({i},{j})")
    font, lut = _font(), _colour_lut()
    top, gap = 40, 2
    width = _LABEL_W + len(columns) * (cell + gap)
    canvas = Image.new("RGB", (width, top + len(row_frames) * (cell + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), _fit(draw, _title(maps), font, width - 8), fill=(0, 0, 0), font=font)
    for c, name in enumerate(columns):
        draw.text((_LABEL_W + c * (cell + gap) + 2, top - 16), _fit(draw, name, font, cell - 4), fill=(0, 0, 0),
                  font=font)
    for r, (d, f) in enumerate(zip(row_slices, row_frames)):
        y = top + r * (cell + gap)
        last = min(-(-(d + 1) * T // slices), T) - 1
        draw.text((4, y + cell // 2 - 14), f"slice {d}", fill=(0, 0, 0), font=font)
        draw.text((4, y + cell // 2), f"frames {f}-{last}" if last > f else f"frame {f}", fill=(60, 60, 60), font=font)
        base = _frame_cell(maps.frames[f], cell)
        cells = [base, _gradcam_cell(base, maps, f, cell, lut)]
        if sem is not None:
            owners, palette = _owners(sem, d, cell)
            cells.append(_assignment_cell(base, owners, palette))
            cells += [_token_cell(base, sem, _token_at(sem, q, f, T), d, cell, lut) for q in positions]
        for c, pixels in enumerate(cells):
            canvas.paste(Image.fromarray(pixels), (_LABEL_W + c * (cell + gap), y))
    buffer = io.BytesIO()
    # a 256-colour palette keeps a textured clip's picture ~4x smaller, at no visible cost
    canvas.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG")
    return buffer.getvalue()


def _animation_frames(maps: ClipMaps, unit: int, cell: int) -> list[np.ndarray]:
    """uint8 (h, w, 3) per clip frame: frame | Grad-CAM | assignment, a caption strip below."""
    from PIL import Image, ImageDraw

    sem = _unit(maps, unit)
    T = len(maps.frames)
    panels = 3 if sem is not None else 2
    font, lut = _font(), _colour_lut()
    strip = 18
    out = []
    for f in range(T):
        base = _frame_cell(maps.frames[f], cell)
        cells = [base, _gradcam_cell(base, maps, f, cell, lut)]
        if sem is not None:
            owners, palette = _owners(sem, _slice_of(f, T, sem.image_tokens[0]), cell)
            cells.append(_assignment_cell(base, owners, palette))
        canvas = Image.new("RGB", (panels * cell, cell + strip), (255, 255, 255))
        for c, pixels in enumerate(cells):
            canvas.paste(Image.fromarray(pixels), (c * cell, 0))
        caption = f"frame {f + 1}/{T}  {maps.predicted.name} {100 * maps.predicted.score:.0f}%"
        draw = ImageDraw.Draw(canvas)
        draw.text((3, cell + 3), _fit(draw, caption, font, panels * cell - 6), fill=(0, 0, 0), font=font)
        out.append(np.asarray(canvas))
    return out


def animation(maps: ClipMaps, fmt: str = "gif", *, unit: int = -1, cell: int = CELL, fps: float = 6.0) -> bytes:
    """The clip with its Grad-CAM (and assignment) overlays, one picture per clip frame, as GIF
    (looping) or MP4 (H.264) bytes."""
    if fmt not in ANIMATION_FORMATS:
        raise ValueError(f"animation format {fmt!r}: use one of {', '.join(ANIMATION_FORMATS)}")
    frames = _animation_frames(maps, unit, cell)
    buffer = io.BytesIO()
    if fmt == "gif":
        from PIL import Image

        # one fast octree palette per frame: Pillow's default quantiser costs ~10x more
        images = [Image.fromarray(f).quantize(colors=255, method=Image.Quantize.FASTOCTREE) for f in frames]
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
                       loop=0)
        return buffer.getvalue()
    import av

    h, w = frames[0].shape[:2]
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20", "threads": "1"}
        for f in frames:
            padded = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=255)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def _values(array: np.ndarray) -> list:
    return np.round(array.astype(np.float64), 6).tolist()


def maps_json(maps: ClipMaps) -> dict:
    """The raw maps of one clip as plain JSON types: every map with its ``shape`` and what its
    positions are; token maps only over the slices each token attends (``slices`` [start, stop))."""
    T, h, w = maps.frames.shape[:3]
    cam = maps.gradcam
    out = {
        "video": maps.video, "arch": maps.arch,
        "clip": {"frames": T, "height": h, "width": w},
        "predicted": maps.predicted._asdict(), "explained": maps.explained._asdict(),
        "gradcam": {"class_id": maps.explained.class_id, "layout": maps.gradcam_layout, "shape": list(cam.shape),
                    "frames_per_slice": T / cam.shape[0], "values": _values(cam)},
        "semantic_tokens": None, "notes": list(maps.notes),
    }
    if not maps.semantic:
        return out
    units = []
    for sem in maps.semantic:
        tokens = []
        for k in range(sem.attention.shape[0]):
            start, stop = (int(v) for v in sem.visible[k])
            part = sem.attention[k, start:stop]
            tokens.append({"token": k, "grid_position": list(sem.token_position(k)), "slices": [start, stop],
                           "shape": list(part.shape), "semantic_key_share": round(float(sem.semantic_share[k]), 6),
                           "values": _values(part)})
        units.append({"unit": sem.unit, "mode": sem.mode, "image_tokens": list(sem.image_tokens),
                      "grid": list(sem.grid), "tokens": tokens,
                      "assignment": {"shape": list(sem.assignment.shape), "values": sem.assignment.tolist()}})
    out["semantic_tokens"] = {"layer": "STGM layer 2", "units": units}
    return out

