"""``EvalResults``: everything a multi-view evaluation report needs, saved beside the report.

The tester fills one object with the per-view logits of every test video (not the aggregated
scores), so the report, the views curve and any other ensemble can be rebuilt later without
running the model again:

    results = EvalResults(logits=..., valid=..., labels=..., paths=..., class_names=...,
                          num_clips=4, num_crops=3, failures={7: "decord: cannot open ..."},
                          meta={"checkpoint": {...}, "cost": {...}})
    results.save(out_dir / "test_results.npz")        # or ".pt"
    results = EvalResults.load(out_dir / "test_results.npz")

Layout: view ``v`` of a video is clip ``v // num_crops``, crop ``v % num_crops``; clip ``k`` of
``K`` is centred in the k-th of K equal segments of the video. When the centre clip is not one of
them (K even), the tester adds its centre-crop logits as ``centre_logits`` / ``centre_valid``.
Only numpy is imported here; torch is imported inside the ``.pt`` branch of ``save`` / ``load``.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from stvit_video.utils.atomic import atomic_write
from stvit_video.utils.errors import DataError
from stvit_video.utils.view_grid import CROP_CHOICES, ENSEMBLE_METHODS, views_per_video

__all__ = ["FORMAT_VERSION", "ResultsError", "EvalResults"]

# Bumped when the saved layout changes; ``load`` refuses newer files instead of misreading them.
FORMAT_VERSION = 1
_SUFFIXES = (".npz", ".pt")
_ARRAY_KEYS = ("logits", "valid", "labels")
_CENTRE_KEYS = ("centre_logits", "centre_valid")  # optional: files without them still load
_INFO_KEYS = ("paths", "class_names", "num_clips", "num_crops", "ensemble", "failures", "meta")

PathLike = Union[str, "os.PathLike[str]"]


class ResultsError(DataError, ValueError):
    """Test results are inconsistent or a results file is unreadable; the message names the field
    or the file. A ``DataError``, so the command line prints it as one ``error:`` line."""


@dataclass
class EvalResults:
    """Per-view logits of one test run, plus what is needed to report on them.

    Attributes:
        logits: float32 (N, V, K) per-view logits (before softmax); N videos, V views, K classes.
        valid: bool (N, V); False = the view could not be decoded, its logits are ignored.
        labels: int64 (N,) ground-truth class id of each video, in ``[0, K)``.
        paths: N video paths, in the row order of the test list.
        class_names: K class names by id (``["0", "1", ...]`` when unknown).
        num_clips: clips per video (``TEST.NUM_ENSEMBLE_VIEWS``).
        num_crops: spatial crops per clip (``TEST.NUM_SPATIAL_CROPS``); V == num_clips * num_crops.
        ensemble: how the softmax scores of the views of a video combine: "sum" or "max".
        failures: video row -> the decoder's reason, for videos with a failed view.
        meta: JSON-able provenance and cost (keys ``model``, ``cost``, ``checkpoint``, ``config``,
            ``data``, ``software``, ``extra_results`` are rendered first by the report).
        centre_logits: float32 (N, K) logits of the centre clip x centre crop, or None when that
            view is part of the grid (odd ``num_clips``) or was not evaluated.
        centre_valid: bool (N,) with ``centre_logits`` (None without).

    Arrays (numpy or CPU tensors) are converted to the dtypes above on construction and checked;
    ``meta`` is normalised to plain JSON types (numpy scalars -> numbers, tuples -> lists, paths
    -> str, NaN/inf -> None). A mismatch raises :class:`ResultsError` naming the field and shapes.
    """

    logits: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: list[str]
    num_clips: int
    num_crops: int
    ensemble: str = "sum"
    failures: dict[int, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    centre_logits: Optional[np.ndarray] = None
    centre_valid: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.logits = _array("logits", self.logits, np.float32)
        self.valid = _array("valid", self.valid, np.bool_)
        self.labels = _array("labels", self.labels, np.int64)
        if (self.centre_logits is None) != (self.centre_valid is None):
            raise ResultsError("centre_logits and centre_valid: give both or neither")
        if self.centre_logits is not None:
            self.centre_logits = _array("centre_logits", self.centre_logits, np.float32)
            self.centre_valid = _array("centre_valid", self.centre_valid, np.bool_)
        self.paths = _strings("paths", self.paths)
        self.class_names = _strings("class_names", self.class_names)
        self.num_clips = _positive_int("num_clips", self.num_clips)
        self.num_crops = _positive_int("num_crops", self.num_crops)
        self.failures = _failures(self.failures)
        self.meta = _jsonable(self.meta, "meta")
        if not isinstance(self.meta, dict):
            raise ResultsError(f"meta: expected a dict, got {type(self.meta).__name__}")
        self.validate()

    # ---------------------------------------------------------------- shapes
    @property
    def num_videos(self) -> int:
        """N."""
        return int(self.logits.shape[0])

    @property
    def num_views(self) -> int:
        """V = num_clips * num_crops."""
        return int(self.logits.shape[1])

    @property
    def num_classes(self) -> int:
        """K."""
        return int(self.logits.shape[2])

    def validate(self) -> None:
        """Check that the fields agree (run on construction, again by ``save`` and the report,
        in case fields were changed in place); raises :class:`ResultsError`."""
        if self.ensemble not in ENSEMBLE_METHODS:
            raise ResultsError(f"ensemble: expected one of {ENSEMBLE_METHODS}, got {self.ensemble!r}")
        if self.logits.ndim != 3:
            raise ResultsError(f"logits: expected (N, V, K), got shape {self.logits.shape}")
        n, v, k = self.logits.shape
        if n == 0 or k == 0:
            raise ResultsError(f"logits: no videos or no classes, shape {self.logits.shape}")
        if self.valid.shape != (n, v):
            raise ResultsError(f"valid: expected shape (N, V) = {(n, v)} from logits {self.logits.shape}, "
                               f"got {self.valid.shape}")
        if self.labels.shape != (n,):
            raise ResultsError(f"labels: expected shape (N,) = {(n,)} from logits {self.logits.shape}, "
                               f"got {self.labels.shape}")
        if len(self.paths) != n:
            raise ResultsError(f"paths: expected N = {n} paths (logits {self.logits.shape}), got {len(self.paths)}")
        if len(self.class_names) != k:
            raise ResultsError(f"class_names: expected K = {k} names (logits {self.logits.shape}), "
                               f"got {len(self.class_names)}")
        if self.centre_logits is not None and (self.centre_logits.shape != (n, k) or self.centre_valid.shape != (n,)):
            raise ResultsError(f"centre_logits / centre_valid: expected shapes (N, K) = {(n, k)} and (N,), got "
                               f"{self.centre_logits.shape} and {self.centre_valid.shape}")
        if self.num_crops not in CROP_CHOICES:
            raise ResultsError(f"num_crops: a clip gives 1 crop (centre) or 3 (left, centre, right), not {self.num_crops}")
        if v != views_per_video(self.num_clips, self.num_crops):
            raise ResultsError(f"logits: V = {v} views (shape {self.logits.shape}) but num_clips x num_crops = "
                               f"{self.num_clips} x {self.num_crops} = {self.num_clips * self.num_crops}")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= k))
        if bad.size:
            row = int(bad[0])
            raise ResultsError(f"labels: {bad.size} labels outside [0, K={k}), first: row {row} "
                               f"({self.paths[row]}) has label {int(self.labels[row])}")
        bad_rows = sorted(r for r in self.failures if not 0 <= r < n)
        if bad_rows:
            raise ResultsError(f"failures: rows {bad_rows[:5]} are outside [0, N={n})")
        # Garbage in failed views is expected; a non-finite valid view means the model diverged.
        broken = np.flatnonzero((~np.isfinite(self.logits).all(axis=2) & self.valid).ravel())
        if broken.size:
            row, view = divmod(int(broken[0]), v)
            raise ResultsError(f"logits: {broken.size} valid views have non-finite logits (first: video {row} "
                               f"{self.paths[row]}, view {view}); mark failed views in `valid` or check the model")

    # ---------------------------------------------------------------- files
    def save(self, path: PathLike) -> Path:
        """Write to ``path`` (``.npz`` or ``.pt``, chosen by suffix), atomically: a temporary file
        in the same folder is renamed over ``path``. Returns ``path``."""
        path = Path(path)
        suffix = _suffix(path)
        self.validate()
        info = {"format_version": FORMAT_VERSION, "paths": self.paths, "class_names": self.class_names,
                "num_clips": self.num_clips, "num_crops": self.num_crops, "ensemble": self.ensemble,
                "failures": {str(k): v for k, v in sorted(self.failures.items())}, "meta": self.meta}
        arrays = {"logits": self.logits, "valid": self.valid, "labels": self.labels}
        if self.centre_logits is not None:
            arrays.update(centre_logits=self.centre_logits, centre_valid=self.centre_valid)

        def write(f) -> None:
            if suffix == ".npz":
                # uncompressed: float logits barely compress (7% for Kinetics-400) at 20x the time
                np.savez(f, **arrays, info=np.array(json.dumps(info, allow_nan=False)))
            else:
                torch = _import_torch()
                info["failures"] = dict(sorted(self.failures.items()))
                torch.save({**info, **{k: torch.from_numpy(v) for k, v in arrays.items()}}, f)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: PathLike) -> "EvalResults":
        """Read a file written by :meth:`save`; ``ResultsError`` names the file and what is wrong."""
        path = Path(path)
        suffix = _suffix(path)
        if not path.is_file():
            raise ResultsError(f"results file not found: {path}")
        if suffix == ".npz":
            arrays, info = _read_npz(path)
        else:
            arrays, info = _read_pt(path)
        version = info.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ResultsError(f"{path}: format_version {version!r} is not supported "
                               f"(this stvit_video reads up to {FORMAT_VERSION})")
        missing = [k for k in _INFO_KEYS if k not in info]
        if missing:
            raise ResultsError(f"{path}: missing keys {missing}; not a EvalResults file")
        try:
            failures = {int(k): v for k, v in info["failures"].items()}
            return cls(**arrays, paths=info["paths"], class_names=info["class_names"], num_clips=info["num_clips"],
                       num_crops=info["num_crops"], ensemble=info["ensemble"], failures=failures, meta=info["meta"])
        except (ResultsError, TypeError, ValueError, AttributeError) as e:
            raise ResultsError(f"{path}: {e}") from e


# -------------------------------------------------------------------- readers
def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_ARRAY_KEYS, "info") if k not in data.files]
            if missing:
                raise ResultsError(f"{path}: missing arrays {missing}; not a EvalResults file")
            arrays = {k: data[k] for k in (*_ARRAY_KEYS, *_CENTRE_KEYS) if k in data.files}
            info = json.loads(str(data["info"]))
    except ResultsError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ResultsError(f"{path}: cannot read as .npz results ({type(e).__name__}: {_first_line(e)})") from e
    if not isinstance(info, dict):
        raise ResultsError(f"{path}: 'info' is not a JSON object")
    return arrays, info


def _read_pt(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    torch = _import_torch()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        # On foreign bytes the weights-only unpickler raises whatever they trigger (IndexError,
        # UnpicklingError, RuntimeError, ...); all of them mean "not a results file".
        raise ResultsError(f"{path}: cannot read as .pt results ({type(e).__name__}: {_first_line(e)})") from e
    if not isinstance(payload, dict):
        raise ResultsError(f"{path}: expected a dict, got {type(payload).__name__}")
    missing = [k for k in _ARRAY_KEYS if not isinstance(payload.get(k), torch.Tensor)]
    if missing:
        raise ResultsError(f"{path}: missing tensors {missing}; not a EvalResults file")
    arrays = {k: payload[k].numpy() for k in (*_ARRAY_KEYS, *_CENTRE_KEYS) if isinstance(payload.get(k), torch.Tensor)}
    info = {k: v for k, v in payload.items() if k not in arrays}
    return arrays, info


def _first_line(error: BaseException) -> str:
    """The gist of a library's error (torch appends paragraphs of advice after it)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ResultsError("saving or loading .pt results needs torch (pip install torch); "
                           "use .npz without it") from e
    return torch


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise ResultsError(f"{path}: unknown results format {path.suffix!r}; use one of {_SUFFIXES}")
    return suffix


# -------------------------------------------------------------------- coercion
def _array(name: str, value: Any, dtype: type) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:  # e.g. a CUDA tensor
        raise ResultsError(f"{name}: cannot convert {type(value).__name__} to a numpy array ({e}); "
                           f"pass CPU arrays") from e
    if dtype is np.int64 and array.size and not np.issubdtype(array.dtype, np.integer):
        raise ResultsError(f"{name}: expected integer class ids, got dtype {array.dtype}")
    if dtype is np.bool_ and array.dtype != np.bool_:
        raise ResultsError(f"{name}: expected a bool array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=dtype)


def _strings(name: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        raise ResultsError(f"{name}: expected a list of str, got {type(value).__name__}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            if isinstance(item, os.PathLike):
                items[i] = os.fspath(item)
            elif isinstance(item, np.str_):
                items[i] = str(item)
            else:
                raise ResultsError(f"{name}[{i}]: expected str, got {type(item).__name__} {item!r}")
    return items


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ResultsError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


def _failures(value: Any) -> dict[int, str]:
    if not isinstance(value, dict):
        raise ResultsError(f"failures: expected a dict video row -> reason, got {type(value).__name__}")
    out = {}
    for row, reason in value.items():
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
            raise ResultsError(f"failures: key {row!r} is not a video row (int)")
        if not isinstance(reason, str):
            raise ResultsError(f"failures[{row}]: expected the decoder's reason as str, got {type(reason).__name__}")
        out[int(row)] = reason
    return dict(sorted(out.items()))


def _jsonable(value: Any, where: str) -> Any:
    """A copy of ``value`` made of dict/list/str/int/float/bool/None only (see EvalResults)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ResultsError(f"{where}: key {key!r} is not a str (JSON object keys must be)")
            out[key] = _jsonable(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ResultsError(f"{where}: {type(value).__name__} is not JSON-able; store str(value) or a number")
