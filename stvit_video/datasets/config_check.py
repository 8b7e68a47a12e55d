"""Checks of the config values whose valid choices are defined in this package.

The lists live beside the code that uses them (decoders, dataset factories, erase modes,
RandAugment strings), so a new backend or dataset is valid as soon as it is registered.
:func:`check_data_config` is pure: it reads the config and raises, never mutates it.
``config/validate.py`` calls it; ranges and shapes of the other DATA / AUG keys are checked there.
"""
from __future__ import annotations

from fvcore.common.config import CfgNode

from stvit_video.config.access import check_choices
from stvit_video.datasets.clip_sampling import OUT_OF_BOUND_POLICIES
from stvit_video.datasets.decoder import BACKENDS
from stvit_video.datasets.device_transforms import ERASE_MODES
from stvit_video.datasets.kinetics import DATASETS
from stvit_video.datasets.transforms import parse_rand_augment

__all__ = ["check_data_config"]


def check_data_config(cfg: CfgNode) -> None:
    """Raise :class:`ConfigError` (naming the key, the value and the valid choices) unless
    ``DATA.DECODING_BACKEND``, ``TRAIN.DATASET``, ``TEST.DATASET``, ``AUG.RE_MODE``,
    ``DATA.OUT_OF_BOUND`` and (when ``AUG.ENABLE``) ``AUG.AA_TYPE`` are values this package knows."""
    check_choices(cfg, {"DATA.DECODING_BACKEND": BACKENDS, "TRAIN.DATASET": DATASETS, "TEST.DATASET": DATASETS,
                        "AUG.RE_MODE": ERASE_MODES, "DATA.OUT_OF_BOUND": OUT_OF_BOUND_POLICIES})
    if cfg.AUG.ENABLE and cfg.AUG.AA_TYPE:  # "" turns RandAugment off
        parse_rand_augment(cfg.AUG.AA_TYPE)  # its ConfigError names AUG.AA_TYPE and the bad part
