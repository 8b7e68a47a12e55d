"""Map config keys to model constructor arguments (the only place models meet the config).

Key name = argument name in upper case: ``SWIN.EMBED_DIM`` -> ``embed_dim``,
``STVIT.SAMPLE_WINDOW_SIZE`` -> ``sample_window_size``. The config object is duck-typed
(anything with attribute access), so this module needs no fvcore.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from stvit_video.models.stvit import STViTSwinTransformer3D
from stvit_video.models.swin3d import SwinTransformer3D

__all__ = ["MODEL_ARCHS", "build_model", "swin_kwargs", "stvit_kwargs"]


def swin_kwargs(cfg: Any) -> dict[str, Any]:
    """Constructor arguments of :class:`SwinTransformer3D` from ``MODEL.*`` and ``SWIN.*``."""
    return dict(
        num_classes=cfg.MODEL.NUM_CLASSES,
        in_chans=cfg.DATA.INPUT_CHANNEL_NUM,
        patch_size=tuple(cfg.SWIN.PATCH_SIZE),
        embed_dim=cfg.SWIN.EMBED_DIM,
        depths=tuple(cfg.SWIN.DEPTHS),
        num_heads=tuple(cfg.SWIN.NUM_HEADS),
        window_size=tuple(cfg.SWIN.WINDOW_SIZE),
        mlp_ratio=cfg.SWIN.MLP_RATIO,
        qkv_bias=cfg.SWIN.QKV_BIAS,
        patch_norm=cfg.SWIN.PATCH_NORM,
        drop_rate=cfg.SWIN.DROP_RATE,
        attn_drop_rate=cfg.SWIN.ATTN_DROP_RATE,
        drop_path_rate=cfg.SWIN.DROP_PATH_RATE,
        head_dropout=cfg.MODEL.DROPOUT_RATE,
    )


def stvit_kwargs(cfg: Any) -> dict[str, Any]:
    """Constructor arguments of :class:`STViTSwinTransformer3D` (Swin ones + ``STVIT.*``)."""
    return dict(
        swin_kwargs(cfg),
        stvit_stage=cfg.STVIT.STAGE,
        num_units=cfg.STVIT.NUM_UNITS,
        mode=cfg.STVIT.MODE,
        recovery=cfg.STVIT.RECOVERY,
        sample_window_size=cfg.STVIT.SAMPLE_WINDOW_SIZE,
        temporal_pool=cfg.STVIT.TEMPORAL_POOL,
        use_global=cfg.STVIT.USE_GLOBAL,
        layer_scale_init=cfg.STVIT.LAYER_SCALE_INIT,
        img_size=cfg.DATA.TRAIN_CROP_SIZE,
    )


MODEL_ARCHS: dict[str, Callable[[Any], nn.Module]] = {
    "swin3d": lambda cfg: SwinTransformer3D(**swin_kwargs(cfg)),
    "stvit_swin3d": lambda cfg: STViTSwinTransformer3D(**stvit_kwargs(cfg)),
}


def build_model(cfg: Any) -> nn.Module:
    """Build the (randomly initialised) model of ``MODEL.ARCH``, on the CPU."""
    try:
        builder = MODEL_ARCHS[cfg.MODEL.ARCH]
    except KeyError:
        raise ValueError(f"MODEL.ARCH = {cfg.MODEL.ARCH!r} is not one of {', '.join(MODEL_ARCHS)}") from None
    model = builder(cfg)
    if cfg.MODEL.ACT_CHECKPOINT:
        model.set_grad_checkpointing(True)
    return model
