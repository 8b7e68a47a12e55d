"""The model of a run: built from the config, then initialised from TRAIN.CHECKPOINT_FILE_PATH."""
from __future__ import annotations

import logging
from typing import Any

from torch import nn

from stvit_video.engine.checkpoint import InferenceCheckpoint
from stvit_video.models import build_model
from stvit_video.models.build import build_model_from_arch
from stvit_video.models.weights import LoadReport, load_pretrained
from stvit_video.utils.errors import CheckpointError

logger = logging.getLogger(__name__)

# checkpoint formats whose classifier is ImageNet's: never fits a video head
IMAGENET_FORMATS = ("swin2d", "stvit_r2d")
# layer scales below this leave blocks converted from a Swin nearly silent at the start
MUTED_LAYER_SCALE = 0.01


def build_initialised_model(cfg: Any) -> nn.Module:
    """``build_model(cfg)``, then the weights of TRAIN.CHECKPOINT_FILE_PATH if one is set.

    The checkpoint is read as TRAIN.CHECKPOINT_TYPE; every fresh or unused key is logged
    (see :func:`stvit_video.models.weights.load_pretrained`). A 2D ImageNet checkpoint
    (``swin2d``, ``stvit_r2d``) never has a fitting classifier, so its head is always
    re-initialised.
    """
    model = build_model(cfg)
    path = cfg.TRAIN.CHECKPOINT_FILE_PATH
    if path:
        fmt = cfg.TRAIN.CHECKPOINT_TYPE
        logger.info("initialising %s from %s (%s)", cfg.MODEL.ARCH, path, fmt)
        report = load_pretrained(model, path, fmt=fmt,
                                 reinit_head=cfg.TRAIN.CHECKPOINT_REINIT_HEAD or fmt in IMAGENET_FORMATS, log=logger)
        _warn_muted_conversion(model, report)
    return model


def _warn_muted_conversion(model: nn.Module, report: LoadReport) -> None:
    """STViT blocks that took a trained Swin's weights but start behind near-zero layer scales
    act as if those blocks were missing; say so, and what the conversion recipes use."""
    init = getattr(getattr(model, "stvit", None), "layer_scale_init", None)
    took_swin_blocks = any(why.startswith("Swin block replaced") for why in report.unused.values())
    if init is not None and took_swin_blocks and init < MUTED_LAYER_SCALE:
        logger.warning("the STViT blocks took the Swin's weights but start with layer scales of %g (STVIT.LAYER_SCALE_INIT), "
                       "which mutes them; converting a trained Swin is faster with STVIT.LAYER_SCALE_INIT 1.0 (as "
                       "configs/convert/ sets it)", init)


def build_checkpoint_model(loaded: InferenceCheckpoint, who: str) -> nn.Module:
    """The model of one of our checkpoints: its stored architecture with its weights, strictly.

    Args:
        loaded: from :func:`stvit_video.engine.checkpoint.load_for_inference`.
        who: the caller, for the message ("test", "predict", ...).

    Raises:
        CheckpointError: the weights do not fit the stored architecture.
    """
    model = build_model_from_arch(loaded.arch)
    try:
        model.load_state_dict(loaded.state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{who}: {loaded.path} does not fit its own architecture: {e}") from e
    return model
