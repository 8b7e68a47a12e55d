"""Config -> model: the only place models meet the config.

``MODEL.ARCH`` names a variant of :mod:`stvit_video.models.registry`; the other model keys are
constructor arguments of :class:`~stvit_video.models.swin3d.SwinTransformer3D` (``SWIN.*``) or
fields of :class:`~stvit_video.models.stvit.STViTConfig` (``STVIT.*``) or of
:class:`~stvit_video.models.tome.ToMeConfig` (``TOME.*``). A key left at ``None`` keeps the
variant's value; a set key overrides it. The config object is duck-typed (attribute access),
so this module needs no fvcore.

Key -> argument (the key's last part in lower case, except where this table says otherwise):

    MODEL.NUM_CLASSES       num_classes
    MODEL.HEAD_DROPOUT      head_dropout
    MODEL.ACT_CHECKPOINT    model.set_grad_checkpointing() (not a constructor argument)
    DATA.INPUT_CHANNEL_NUM  in_chans      (SlowFast's name)
    DATA.TRAIN_CROP_SIZE    img_size      (sizes the STViT global centres)
    SWIN.<KEY>              <key>         e.g. SWIN.DROP_PATH_RATE -> drop_path_rate
    STVIT.<KEY>             stvit.<key>   e.g. STVIT.NUM_UNITS -> STViTConfig.num_units
    TOME.MERGE_RATIO        tome.merge_ratio  (the stage merging tokens is the variant's)
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from torch import nn

from stvit_video.config.access import get_key
from stvit_video.models.registry import STAGE_REPLACEMENTS, VARIANTS, get_variant
from stvit_video.models.stvit import STViTConfig
from stvit_video.models.swin3d import SwinTransformer3D, check_swin_args
from stvit_video.utils.errors import ConfigError, InvalidArgument

__all__ = ["ARG_KEYS", "STVIT_KEYS", "TOME_KEYS", "build_model", "build_model_from_arch", "check_model_config",
           "model_arch"]

# constructor argument -> config key, for every argument the config sets
ARG_KEYS: dict[str, str] = {
    "num_classes": "MODEL.NUM_CLASSES",
    "head_dropout": "MODEL.HEAD_DROPOUT",
    "in_chans": "DATA.INPUT_CHANNEL_NUM",
    "img_size": "DATA.TRAIN_CROP_SIZE",
    **{name: f"SWIN.{name.upper()}" for name in (
        "embed_dim", "depths", "num_heads", "patch_size", "window_size", "mlp_ratio", "qkv_bias",
        "patch_norm", "drop_rate", "attn_drop_rate", "drop_path_rate", "stem_channels", "weight_init")},
}
# STViTConfig field -> config key
STVIT_KEYS: dict[str, str] = {f.name: f"STVIT.{f.name.upper()}" for f in dataclasses.fields(STViTConfig)}
# ToMeConfig field -> config key (ToMeConfig.stage stays the variant's)
TOME_KEYS: dict[str, str] = {"merge_ratio": "TOME.MERGE_RATIO"}


# constructor argument -> field -> config key, for each of registry.STAGE_REPLACEMENTS
_REPLACEMENT_KEYS: dict[str, dict[str, str]] = {"stvit": STVIT_KEYS, "tome": TOME_KEYS}
# arguments a variant may fix: their keys default to None (= keep the variant's value)
_VARIANT_ARGS = ("embed_dim", "depths", "num_heads", "patch_size", "window_size", "stem_channels", "weight_init")
_DEFAULTS = {name: p.default for name, p in inspect.signature(SwinTransformer3D).parameters.items()}


def _config_error(cfg: Any, e: InvalidArgument) -> ConfigError:
    """An argument error of a model class, named by its config key."""
    table = next((_REPLACEMENT_KEYS[arg] for arg, kind in STAGE_REPLACEMENTS.items() if kind.config.__name__ == e.owner),
                 ARG_KEYS)
    key = table.get(e.arg, e.arg)
    return ConfigError(f"{key} = {e.value!r} ({cfg.MODEL.ARCH} with overrides): {e.why}")


def _key_value(cfg: Any, key: str) -> Any:
    value = get_key(cfg, key)
    return tuple(value) if isinstance(value, list) else value


def model_arch(cfg: Any) -> dict[str, Any]:
    """The architecture the config asks for: ``{"name": variant name, "kwargs": {...}}``.

    ``kwargs`` are complete constructor arguments of :class:`SwinTransformer3D`, with
    ``stvit`` and ``tome`` as plain dicts (or None), so the result is JSON-able and rebuilds
    the model with :func:`build_model_from_arch` without the config (checkpoints store it).

    Raises:
        ConfigError: unknown ``MODEL.ARCH``, or ``STVIT.*`` (``TOME.*``) keys set for a variant
            without semantic tokens (token merging).
    """
    name = cfg.MODEL.ARCH
    if name not in VARIANTS:
        raise ConfigError(f"MODEL.ARCH = {name!r}: not a model variant; use one of {', '.join(VARIANTS)} "
                          "(run_net.py --list-models)")
    variant = get_variant(name)
    kwargs = dict(variant.kwargs)
    for arg, key in ARG_KEYS.items():
        value = _key_value(cfg, key)
        if value is not None or arg not in _VARIANT_ARGS:
            kwargs[arg] = value
        elif arg not in kwargs:
            kwargs[arg] = _DEFAULTS[arg]
    for arg, kind in STAGE_REPLACEMENTS.items():
        base, keys = variant.kwargs.get(arg), _REPLACEMENT_KEYS[arg]
        changes = {f: v for f, k in keys.items() if (v := _key_value(cfg, k)) is not None}
        if base is None and changes:
            named = ", ".join(keys[f] for f in changes)
            raise ConfigError(f"{named} set, but MODEL.ARCH = {name!r} has no {kind.what}; use {kind.variants} variant")
        try:
            config = dataclasses.replace(base, **changes) if base is not None else None
        except InvalidArgument as e:
            raise _config_error(cfg, e) from e
        kwargs[arg] = config.as_dict() if config is not None else None
    return {"name": name, "kwargs": kwargs}


def build_model_from_arch(arch: dict[str, Any]) -> SwinTransformer3D:
    """Rebuild a model from :func:`model_arch`'s result (e.g. stored in a checkpoint)."""
    kwargs = dict(arch["kwargs"])
    for arg, kind in STAGE_REPLACEMENTS.items():
        if kwargs.get(arg) is not None:  # "tome" is absent from checkpoints written before ToMe
            kwargs[arg] = kind.config(**kwargs[arg])
    return SwinTransformer3D(**kwargs)


def check_model_config(cfg: Any) -> None:
    """Validate the model keys without building the model.

    Raises:
        ConfigError: naming the key, its value and why.
    """
    arch = model_arch(cfg)
    kwargs = arch["kwargs"]
    try:
        check_swin_args(**{a: kwargs[a] for a in ("embed_dim", "depths", "num_heads", "patch_size", "window_size",
                                                  "stem_channels", "weight_init")})
        for arg, kind in STAGE_REPLACEMENTS.items():
            if kwargs[arg] is not None:
                kind.config(**kwargs[arg]).check_fits(depths=kwargs["depths"], window_size=kwargs["window_size"])
    except InvalidArgument as e:
        raise _config_error(cfg, e) from e
    if not 0.0 <= cfg.MODEL.HEAD_DROPOUT < 1.0:
        raise ConfigError(f"MODEL.HEAD_DROPOUT = {cfg.MODEL.HEAD_DROPOUT!r}: must be in [0, 1)")
    if not 0.0 <= cfg.SWIN.DROP_PATH_RATE < 1.0:
        raise ConfigError(f"SWIN.DROP_PATH_RATE = {cfg.SWIN.DROP_PATH_RATE!r}: must be in [0, 1)")


def build_model(cfg: Any) -> nn.Module:
    """Build the (randomly initialised) model of the config, on the CPU."""
    try:
        model = build_model_from_arch(model_arch(cfg))
    except InvalidArgument as e:  # check_model_config catches these first; this is its safety net
        raise _config_error(cfg, e) from e
    if cfg.MODEL.ACT_CHECKPOINT:
        model.set_grad_checkpointing(True)
    return model
