"""Configuration: fvcore ``CfgNode`` defaults, YAML loading with ``_BASE_``, generic validation.

A leaf package: it imports neither models nor datasets (the engine adds their checks).
"""
from stvit_video.config.defaults import get_cfg_defaults
from stvit_video.config.loader import available_configs, configs_root, load_config, resolve_config
from stvit_video.config.validate import validate_config

__all__ = ["available_configs", "configs_root", "get_cfg_defaults", "load_config", "resolve_config",
           "validate_config"]
