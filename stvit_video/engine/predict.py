"""Predict the classes of video files with one of our checkpoints (no config, no lists).

The checkpoint carries everything inference needs (:class:`~stvit_video.engine.checkpoint.InferenceCheckpoint`):
the architecture, the class names and the test transform it was trained with. Each video is
seen as ``clips x crops`` views exactly as the multi-view tester sees it (the same dataset,
loader and device normalisation), and the softmax scores of its views are combined by sum
(or max). A file that cannot be decoded gets its reason instead of a prediction; files that
do not exist are named before anything runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from stvit_video.config import get_cfg_defaults, with_values
from stvit_video.datasets import build_device_transform, construct_loader
from stvit_video.datasets.kinetics import clip_dataset
from stvit_video.datasets.video_list import VIDEO_EXTENSIONS, VideoList, VideoRecord, full_class_names
from stvit_video.engine import checkpoint as ckpt
from stvit_video.engine.model_setup import build_checkpoint_model
from stvit_video.engine.views import assemble_views, run_views, with_stored_transform
from stvit_video.report.metrics import aggregate
from stvit_video.utils.cpu_malloc import keep_freed_cpu_memory
from stvit_video.utils.errors import ConfigError, DataError
from stvit_video.utils.view_grid import CROP_CHOICES, ENSEMBLE_METHODS

logger = logging.getLogger(__name__)

__all__ = ["ClassScore", "VideoPrediction", "find_videos", "predict_videos"]


@dataclass(frozen=True)
class ClassScore:
    """One class of a prediction: id, name (the id as text without names) and mean view probability."""

    class_id: int
    name: str
    score: float


@dataclass(frozen=True)
class VideoPrediction:
    """The top classes of one video, or why it has none.

    Attributes:
        path: the video file.
        top: best classes first; empty when no view could be decoded.
        views: views that were decoded and scored (of ``clips x crops``).
        error: the decoder's reason when no view was decoded, else None.
    """

    path: str
    top: tuple[ClassScore, ...]
    views: int
    error: Optional[str] = None


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
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            if not found:
                raise DataError(f"predict: folder {item} holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            videos.extend(found)
        else:
            videos.append(item)
    return videos


def _config(loaded: ckpt.InferenceCheckpoint, *, clips: Optional[int], crops: Optional[int],
            ensemble: str, backend: Optional[str], batch_size: int):
    """Default config with the checkpoint's test transform, classes and views (or the given views)."""
    stored = loaded.test_transform
    crops = int(crops or stored["num_crops"])
    values = {"TEST.NUM_ENSEMBLE_VIEWS": int(clips or stored["num_clips"]), "TEST.NUM_SPATIAL_CROPS": crops,
              "TEST.ENSEMBLE_METHOD": ensemble, "TEST.BATCH_SIZE": max(batch_size, crops),
              "MODEL.NUM_CLASSES": int(loaded.arch["kwargs"]["num_classes"]), "DATA_LOADER.NUM_WORKERS": 0}
    if backend:
        values["DATA.DECODING_BACKEND"] = backend
    return with_values(with_stored_transform(get_cfg_defaults(), stored), values)


def predict_videos(checkpoint: str | Path, videos: Sequence[str | Path], *, topk: int = 5,
                   clips: Optional[int] = None, crops: Optional[int] = None, ensemble: str = "sum",
                   device: str = "auto", backend: Optional[str] = None,
                   batch_size: int = 12) -> list[VideoPrediction]:
    """Top-``topk`` classes of every video, in the order given.

    Args:
        checkpoint: one of our checkpoints (``best.pyth``, ``last.pyth``, ...).
        videos: video files (see :func:`find_videos` for folders).
        clips, crops: views per video; default: the checkpoint's test protocol.
        ensemble: "sum" or "max" of the views' softmax scores.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        backend: decoder ("decord" or "pyav"); default: the config default.
        batch_size: views per forward pass.

    Raises:
        CheckpointError: the checkpoint cannot be read or does not fit its architecture.
        ConfigError: views or an ensemble that do not exist (e.g. 2 crops per clip).
        DataError: a video file does not exist.
    """
    if ensemble not in ENSEMBLE_METHODS:
        raise ConfigError(f"predict: ensemble {ensemble!r}: use one of {', '.join(ENSEMBLE_METHODS)}")
    if crops is not None and crops not in CROP_CHOICES:
        raise ConfigError(f"predict: {clips or '?'}x{crops} views: a clip gives "
                          f"{' or '.join(map(str, CROP_CHOICES))} crops (centre; left, centre, right), not {crops}")
    if clips is not None and clips < 1:
        raise ConfigError(f"predict: {clips} clips per video: use at least 1")
    paths = [Path(v) for v in videos]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"predict: no such video file: {', '.join(missing)}")
    if not paths:
        return []
    loaded = ckpt.load_for_inference(checkpoint)
    cfg = _config(loaded, clips=clips, crops=crops, ensemble=ensemble, backend=backend, batch_size=batch_size)
    model = build_checkpoint_model(loaded, "predict")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    if dev.type == "cpu" and cfg.CPU_MALLOC_REUSE:
        keep_freed_cpu_memory()
    model.to(dev)
    num_classes = cfg.MODEL.NUM_CLASSES
    names = full_class_names(loaded.class_names, num_classes)
    records = [VideoRecord(str(p.resolve()), 0) for p in paths]
    dataset = clip_dataset(cfg, "test", VideoList(records, names, "predict"))
    loader = construct_loader(cfg, "test", dataset=dataset, num_replicas=1, rank=0)
    views = dataset.views_per_video
    logger.info("predict: %d video(s) x %d views (%d clips x %d crops) with %s (%s, epoch %d) on %s",
                len(paths), views, cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, checkpoint,
                loaded.arch["name"], loaded.epoch, dev)
    out = run_views(model, loader, device=dev, device_transform=build_device_transform(cfg),
                    amp=torch.bfloat16 if dev.type == "cuda" else None, max_views_per_batch=0,
                    num_classes=num_classes)
    logits, valid = assemble_views([out], len(paths), views, num_classes)
    scores, has_view = aggregate(logits, valid, ensemble)
    results = []
    for i, path in enumerate(paths):
        if not has_view[i]:
            results.append(VideoPrediction(str(path), (), 0, out.failures.get(i, "no view could be decoded")))
            continue
        used = int(valid[i].sum())
        probs = scores[i] / used if ensemble == "sum" else scores[i]
        order = np.argsort(-probs, kind="stable")[:topk]
        results.append(VideoPrediction(str(path), tuple(ClassScore(int(c), names[c], float(probs[c])) for c in order),
                                       used))
    return results
