"""What the train and test jobs share: where checkpoints go, the autocast dtype, the transform
a checkpoint records for inference; and what the inference commands (predict, visualize) share:
the video files they are given and the device they run on.

Both jobs (:mod:`stvit_video.engine.train_job`, :mod:`stvit_video.engine.test_job`),
prediction and the pictures import these from here, so none of them imports another.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from fvcore.common.config import CfgNode

from stvit_video.datasets.kinetics import test_short_side
from stvit_video.utils.errors import DataError

__all__ = ["AMP_DTYPES", "amp_dtype", "checkpoint_dir", "inference_device", "test_transform_of", "video_files"]

# TRAIN.AMP_DTYPE choices
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def checkpoint_dir(cfg: CfgNode) -> Path:
    """``OUTPUT_DIR/checkpoints``."""
    return Path(cfg.OUTPUT_DIR) / "checkpoints"


def amp_dtype(cfg: CfgNode, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype: ``TRAIN.AMP_DTYPE`` on CUDA with ``TRAIN.MIXED_PRECISION``, else None (fp32)."""
    if device.type != "cuda" or not cfg.TRAIN.MIXED_PRECISION:
        return None
    return AMP_DTYPES[cfg.TRAIN.AMP_DTYPE]


def test_transform_of(cfg: CfgNode) -> dict[str, Any]:
    """What a checkpoint records so inference needs no config: the test-time transform and views."""
    return {"mean": list(cfg.DATA.MEAN), "std": list(cfg.DATA.STD), "short_side": test_short_side(cfg),
            "crop": cfg.DATA.TEST_CROP_SIZE, "num_frames": cfg.DATA.NUM_FRAMES,
            "sampling_rate": cfg.DATA.SAMPLING_RATE, "target_fps": float(cfg.DATA.TARGET_FPS),
            "num_clips": cfg.TEST.NUM_ENSEMBLE_VIEWS, "num_crops": cfg.TEST.NUM_SPATIAL_CROPS,
            "out_of_bound": cfg.DATA.OUT_OF_BOUND}


def video_files(videos: Sequence[str | Path], command: str) -> list[Path]:
    """The given video files as paths.

    Raises:
        DataError: some do not exist (all named, after ``command``).
    """
    paths = [Path(v) for v in videos]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{command}: no such video file: {', '.join(missing)}")
    return paths


def inference_device(device: str) -> torch.device:
    """``device`` as a torch device; "auto" = CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
