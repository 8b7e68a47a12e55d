"""Configuration: fvcore ``CfgNode`` defaults, YAML loading with ``_BASE_``, generic validation,
and dotted-key access (:mod:`stvit_video.config.access`).

A leaf package: it imports neither models nor datasets (the engine adds their checks). Its names
load on first use, so ``stvit_video.config.access`` (used by the model builder) needs no fvcore.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["available_configs", "check_choice", "configs_root", "get_cfg_defaults", "get_key", "load_config",
           "resolve_config", "validate_config", "with_values"]

_HOME = {"get_cfg_defaults": "defaults", "available_configs": "loader", "configs_root": "loader",
         "load_config": "loader", "resolve_config": "loader", "validate_config": "validate",
         "check_choice": "access", "get_key": "access", "with_values": "access"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'stvit_video.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"stvit_video.config.{_HOME[name]}"), name)
