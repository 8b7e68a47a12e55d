"""Predict the classes of video files with one of our checkpoints (no config, no lists).

The checkpoint carries everything inference needs (:class:`~stvit_video.engine.checkpoint.InferenceCheckpoint`):
the architecture, the class names and the test transform it was trained with. Each video is
seen as ``clips x crops`` views exactly as the multi-view tester sees it (the same dataset,
loader and device normalisation), and the softmax scores of its views are combined by sum
(or max). A file that cannot be decoded gets its reason instead of a prediction; files that
do not exist are named before anything runs.

Long videos: with ``window`` (seconds) every video is cut into sliding time windows
(:func:`~stvit_video.datasets.clip_sampling.sliding_windows`, ``stride`` apart), and each window
is seen as the checkpoint's views as if it were a video of its own: one prediction per window,
a timeline. With ``features`` each prediction also carries its embedding: the pooled
last-stage features before the classifier (``forward_head(..., pre_logits=True)``), averaged
over its views.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from stvit_video.config import get_cfg_defaults, with_values
from stvit_video.datasets import build_device_transform, construct_loader
from stvit_video.datasets.clip_sampling import sliding_windows
from stvit_video.datasets.decoder import open_video
from stvit_video.datasets.kinetics import clip_dataset
from stvit_video.datasets.video_list import VIDEO_EXTENSIONS, VideoList, VideoRecord, full_class_names
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine.job_setup import inference_device, video_files
from stvit_video.engine.model_setup import build_checkpoint_model
from stvit_video.engine.views import assemble_views, run_views, with_stored_transform
from stvit_video.report.metrics import aggregate
from stvit_video.utils.cpu_malloc import keep_freed_cpu_memory
from stvit_video.utils.errors import ConfigError, DataError
from stvit_video.utils.view_grid import CROP_CHOICES, ENSEMBLE_METHODS
from stvit_video.utils.video_formats import is_video_name

logger = logging.getLogger(__name__)

__all__ = ["ClassScore", "VideoPrediction", "find_videos", "predict_videos", "video_windows"]


@dataclass(frozen=True)
class ClassScore:
    """One class of a prediction: id, name (the id as text without names) and mean view probability."""

    class_id: int
    name: str
    score: float


@dataclass(frozen=True, eq=False)
class VideoPrediction:
    """The top classes of one video (or of one time window of it), or why it has none.

    Attributes:
        path: the video file.
        top: best classes first; empty when no view could be decoded.
        views: views that were decoded and scored (of ``clips x crops``).
        error: the decoder's reason when no view was decoded, else None.
        start, end: the time window in seconds (``window`` mode), else None (the whole video).
        embedding: (D,) float32 pooled features before the classifier, mean over the decoded
            views (``features=True``), else None.
    """

    path: str
    top: tuple[ClassScore, ...]
    views: int
    error: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    embedding: Optional[np.ndarray] = None


class _LogitsAndFeatures(nn.Module):
    """``model``'s logits (B, K) and pooled features (B, D) side by side: (B, K + D), so the views
    pass through the tester's :func:`run_views` unchanged."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)
        return torch.cat([self.model.forward_head(features), self.model.forward_head(features, pre_logits=True)], 1)


def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the video files (by extension) under the given folders, sorted.

    Raises:
        DataError: naming every input that does not exist, or a folder without videos.
    """
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise DataError(f"predict: no such file or folder: {', '.join(missing)}")
    videos: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_video_name(p) and p.is_file())
            if not found:
                raise DataError(f"predict: folder {item} holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            videos.extend(found)
        else:
            videos.append(item)
    return videos


def _config(loaded: ckpt.InferenceCheckpoint, *, clips: Optional[int], crops: Optional[int],
            ensemble: str, backend: Optional[str], batch_size: int, workers: int):
    """Default config with the checkpoint's test transform, classes and views (or the given views)."""
    stored = loaded.test_transform
    crops = int(crops or stored["num_crops"])
    values = {"TEST.NUM_ENSEMBLE_VIEWS": int(clips or stored["num_clips"]), "TEST.NUM_SPATIAL_CROPS": crops,
              "TEST.ENSEMBLE_METHOD": ensemble, "TEST.BATCH_SIZE": max(batch_size, crops),
              "MODEL.NUM_CLASSES": int(loaded.arch["kwargs"]["num_classes"]), "DATA_LOADER.NUM_WORKERS": workers}
    if backend:
        values["DATA.DECODING_BACKEND"] = backend
    return with_values(with_stored_transform(get_cfg_defaults(), stored), values)


def video_windows(path: Path, backend: str, window: float, stride: float) -> list[tuple[float, float]]:
    """The sliding time windows of one video file (its duration read from the decoder).

    Raises:
        DataError: the video cannot be opened (the decoder's reason).
    """
    with open_video(path, backend) as video:
        duration = video.num_frames / video.fps if video.fps > 0 else 0.0
    if duration <= 0:
        raise DataError(f"{path}: no frame rate or no frames, so no time windows")
    if duration < window:
        logger.warning("predict: %s is %.2f s long, shorter than the %g s window: one window over the whole video",
                       path, duration, window)
    return sliding_windows(duration, window, stride)


def _check_options(ensemble: str, clips: Optional[int], crops: Optional[int], window: Optional[float],
                   stride: Optional[float], workers: int) -> None:
    if ensemble not in ENSEMBLE_METHODS:
        raise ConfigError(f"predict: ensemble {ensemble!r}: use one of {', '.join(ENSEMBLE_METHODS)}")
    if crops is not None and crops not in CROP_CHOICES:
        raise ConfigError(f"predict: {clips or '?'}x{crops} views: a clip gives "
                          f"{' or '.join(map(str, CROP_CHOICES))} crops (centre; left, centre, right), not {crops}")
    if clips is not None and clips < 1:
        raise ConfigError(f"predict: {clips} clips per video: use at least 1")
    if stride is not None and window is None:
        raise ConfigError("predict: --stride needs --window (the window length in seconds)")
    if window is not None and not window > 0:
        raise ConfigError(f"predict: window {window:g} s: must be > 0 seconds")
    if stride is not None and not stride > 0:
        raise ConfigError(f"predict: stride {stride:g} s: must be > 0 seconds")
    if workers < 0:
        raise ConfigError(f"predict: {workers} workers: use 0 (decode in this process) or more")


def _items(paths: list[Path], backend: str, window: Optional[float], stride: Optional[float]
           ) -> tuple[list[tuple[Path, Optional[tuple[float, float]]]], dict[Path, str]]:
    """(video, time window or None) per prediction, and the videos whose windows could not be
    read (-> the decoder's reason): those get one failed prediction, the rest go on."""
    if window is None:
        return [(p, None) for p in paths], {}
    items: list[tuple[Path, Optional[tuple[float, float]]]] = []
    failed: dict[Path, str] = {}
    for path in paths:
        try:
            items.extend((path, w) for w in video_windows(path, backend, window, stride or window))
        except DataError as e:
            failed[path] = str(e)
    return items, failed


def predict_videos(checkpoint: str | Path, videos: Sequence[str | Path], *, topk: int = 5,
                   clips: Optional[int] = None, crops: Optional[int] = None, ensemble: str = "sum",
                   device: str = "auto", backend: Optional[str] = None, batch_size: int = 12,
                   workers: int = 0, window: Optional[float] = None, stride: Optional[float] = None,
                   features: bool = False) -> list[VideoPrediction]:
    """Top-``topk`` classes of every video (or of every time window of every video), in order.

    Args:
        checkpoint: one of our checkpoints (``best.pyth``, ``last.pyth``, ...).
        videos: video files (see :func:`find_videos` for folders).
        clips, crops: views per video (per window); default: the checkpoint's test protocol.
        ensemble: "sum" or "max" of the views' softmax scores.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        backend: decoder ("decord" or "pyav"); default: the config default.
        batch_size: views per forward pass (views of several videos share a batch).
        workers: loader worker processes decoding ahead of the model (0: in this process).
        window, stride: sliding time windows in seconds (stride default: ``window``); one
            prediction per window, with its ``start`` and ``end``.
        features: also return each prediction's pooled embedding (``embedding``).

    Raises:
        CheckpointError: the checkpoint cannot be read or does not fit its architecture.
        ConfigError: views, windows or an ensemble that do not exist (e.g. 2 crops per clip).
        DataError: a video file does not exist.
    """
    _check_options(ensemble, clips, crops, window, stride, workers)
    paths = video_files(videos, "predict")
    if not paths:
        return []
    began = time.perf_counter()
    loaded = ckpt.load_for_inference(checkpoint)
    cfg = _config(loaded, clips=clips, crops=crops, ensemble=ensemble, backend=backend, batch_size=batch_size,
                  workers=workers)
    items, unreadable = _items(paths, cfg.DATA.DECODING_BACKEND, window, stride)
    model = build_checkpoint_model(loaded, "predict")
    dev = inference_device(device)
    if dev.type == "cpu" and cfg.CPU_MALLOC_REUSE:
        keep_freed_cpu_memory()
    model.to(dev)
    num_classes = cfg.MODEL.NUM_CLASSES
    if loaded.class_names is None:
        logger.warning("predict: %s holds no class names (its training list had no classnames.txt): classes are "
                       "named by their ids 0..%d", checkpoint, num_classes - 1)
    names = full_class_names(loaded.class_names, num_classes)
    scored: list[VideoPrediction] = []
    if items:
        scored = _score(model, cfg, items, names, topk=topk, device=dev, features=features)
        logger.info("predict: %d video(s), %d prediction(s) x %d views (%d clips x %d crops) with %s (%s, epoch %d) "
                    "on %s", len(paths), len(items), cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS,
                    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, checkpoint, loaded.arch["name"],
                    loaded.epoch, dev)
    # back in the order given: a video whose windows could not be read is one failed row
    by_path: dict[Path, list[VideoPrediction]] = {}
    for (path, _), prediction in zip(items, scored):
        by_path.setdefault(path, []).append(prediction)
    results = [r for p in paths for r in (by_path.get(p) or [VideoPrediction(str(p), (), 0, unreadable.get(p))])]
    seconds = time.perf_counter() - began
    logger.info("predict: %d video(s) in %.1f s: %.2f videos/s (%d workers, batch %d views)", len(paths), seconds,
                len(paths) / seconds, workers, cfg.TEST.BATCH_SIZE)
    return results


def _score(model: nn.Module, cfg, items: list[tuple[Path, Optional[tuple[float, float]]]], names: list[str], *,
           topk: int, device: torch.device, features: bool) -> list[VideoPrediction]:
    """Run every view of every item; one prediction per item, in order."""
    num_classes = cfg.MODEL.NUM_CLASSES
    windows = [w for _, w in items]
    records = [VideoRecord(str(p.resolve()), 0) for p, _ in items]
    dataset = clip_dataset(cfg, "test", VideoList(records, names, "predict"),
                           time_windows=None if windows[0] is None else windows)
    loader = construct_loader(cfg, "test", dataset=dataset, num_replicas=1, rank=0)
    views = dataset.views_per_video
    width = num_classes + (model.num_features if features else 0)
    out = run_views(_LogitsAndFeatures(model) if features else model, loader, device=device,
                    device_transform=build_device_transform(cfg),
                    amp=torch.bfloat16 if device.type == "cuda" else None, max_views_per_batch=0,
                    num_classes=width)
    outputs, valid = assemble_views([out], len(items), views, width)
    logits = outputs[..., :num_classes]
    scores, has_view = aggregate(logits, valid, cfg.TEST.ENSEMBLE_METHOD)
    results = []
    for i, (path, window) in enumerate(items):
        start, end = window if window is not None else (None, None)
        if not has_view[i]:
            results.append(VideoPrediction(str(path), (), 0, out.failures.get(i, "no view could be decoded"),
                                           start, end))
            continue
        used = int(valid[i].sum())
        probs = scores[i] / used if cfg.TEST.ENSEMBLE_METHOD == "sum" else scores[i]
        order = np.argsort(-probs, kind="stable")[:topk]
        embedding = outputs[i, valid[i], num_classes:].mean(0) if features else None
        results.append(VideoPrediction(str(path), tuple(ClassScore(int(c), names[c], float(probs[c])) for c in order),
                                       used, None, start, end, embedding))
    return results
