"""The multi-view test grid, the one place its rules are written: ``clips x crops`` views per
video, view ``v = clip * num_crops + crop``, the crops a clip may give, the centre crop, and how
the views' softmax scores combine.

    crops 1 -> the centre crop; crops 3 -> left, centre, right along the long side
    views of a video: clip-major, e.g. 4 x 3: v = 0 1 2 | 3 4 5 | 6 7 8 | 9 10 11

Numbers only (no torch, no numpy), so the config checks, datasets, reports and command lines all
import it.
"""
from __future__ import annotations

__all__ = ["CROP_CHOICES", "ENSEMBLE_METHODS", "centre_crop", "check_crops", "crop_positions", "view_index",
           "views_per_video"]

# spatial positions (0 left/top, 1 centre, 2 right/bottom) of the crops of a clip, by crop count
_POSITIONS = {1: (1,), 3: (0, 1, 2)}
# TEST.NUM_SPATIAL_CROPS choices
CROP_CHOICES = tuple(_POSITIONS)
# TEST.ENSEMBLE_METHOD choices: "sum" (= mean) or the elementwise "max" of the views' softmax
ENSEMBLE_METHODS = ("sum", "max")


def check_crops(num_crops: int) -> int:
    """``num_crops`` if a clip can give that many crops, else ValueError saying which it can."""
    if num_crops not in _POSITIONS:
        raise ValueError(f"a clip gives 1 crop (centre) or 3 (left, centre, right), not {num_crops}")
    return num_crops


def crop_positions(num_crops: int) -> tuple[int, ...]:
    """Spatial positions of the crops, in view order: (1,) or (0, 1, 2)."""
    return _POSITIONS[check_crops(num_crops)]


def centre_crop(num_crops: int) -> int:
    """The crop (within a clip) that is the centre crop: 0 of 1, 1 of 3."""
    return crop_positions(num_crops).index(1)


def view_index(clip: int, crop: int, num_crops: int) -> int:
    """View ``clip * num_crops + crop`` of a video."""
    return clip * num_crops + crop


def views_per_video(num_clips: int, num_crops: int) -> int:
    """``clips x crops``."""
    return num_clips * check_crops(num_crops)
