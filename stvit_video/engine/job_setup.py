"""What the train and test jobs share: where checkpoints go, the autocast dtype, the transform
a checkpoint records for inference.

Both jobs (:mod:`stvit_video.engine.train_job`, :mod:`stvit_video.engine.test_job`) and
prediction import these from here, so neither job imports the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from fvcore.common.config import CfgNode

from stvit_video.datasets.kinetics import test_short_side

__all__ = ["AMP_DTYPES", "amp_dtype", "checkpoint_dir", "test_transform_of"]

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
