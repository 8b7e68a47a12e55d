"""Configuration: fvcore ``CfgNode`` defaults, YAML loading with ``_BASE_``, validation."""
from stvit_video.config.defaults import get_cfg_defaults
from stvit_video.config.loader import available_configs, load_config, resolve_config
from stvit_video.config.validate import assert_and_infer_cfg

__all__ = ["assert_and_infer_cfg", "available_configs", "get_cfg_defaults", "load_config", "resolve_config"]
