"""A run's config, fully checked: the generic rules of :mod:`stvit_video.config` plus the
checks of each package that owns a choice (model variants, data, optimizer, checkpoints).

The config package is a leaf; this is where its checks meet the packages that give the keys
their meaning, so every entry point (run_net.py, tools, tests) loads configs through here.
"""
from __future__ import annotations

import os
from typing import Iterable

from fvcore.common.config import CfgNode

from stvit_video.config import load_config
from stvit_video.config.access import check_choices
from stvit_video.datasets.config_check import check_data_config
from stvit_video.engine.builtin_data import BUILTIN_DATASETS
from stvit_video.engine.distributed import BACKENDS as DIST_BACKENDS
from stvit_video.engine.optimizer import OPTIMIZERS, PARAM_GROUP_RULES
from stvit_video.engine.schedule import LR_POLICIES, LR_SCALING_RULES
from stvit_video.engine.job_setup import AMP_DTYPES
from stvit_video.engine.test_job import CHECKPOINT_SELECTIONS, FAILED_VIEW_POLICIES, TEST_SPLITS
from stvit_video.models.build import check_model_config
from stvit_video.models.weights import CHECKPOINT_FORMATS
from stvit_video.utils.view_grid import ENSEMBLE_METHODS

__all__ = ["check_run_config", "load_run_config"]


# config key -> the choices of the package that owns it (checked by check_run_config)
_CHOICES = {
    "SOLVER.OPTIMIZING_METHOD": OPTIMIZERS,
    "TRAIN.CHECKPOINT_TYPE": CHECKPOINT_FORMATS,
    "TEST.CHECKPOINT_TYPE": CHECKPOINT_FORMATS,
    "TRAIN.AMP_DTYPE": AMP_DTYPES,
    "SOLVER.LR_SCALING": LR_SCALING_RULES,
    "SOLVER.LR_POLICY": LR_POLICIES,
    "SOLVER.PARAM_GROUP_RULE": PARAM_GROUP_RULES,
    "TEST.SPLIT": TEST_SPLITS,
    "TEST.CHECKPOINT_SELECTION": CHECKPOINT_SELECTIONS,
    "DIST.BACKEND": DIST_BACKENDS,
    "TEST.ENSEMBLE_METHOD": ENSEMBLE_METHODS,
    "TEST.FAILED_VIEW_POLICY": FAILED_VIEW_POLICIES,
    "DATA.GENERATE_IF_MISSING": BUILTIN_DATASETS,
}


def check_run_config(cfg: CfgNode) -> None:
    """Run every package's checks on a merged config; raise :class:`ConfigError` naming the key."""
    check_model_config(cfg)
    check_data_config(cfg)
    check_choices(cfg, _CHOICES)


def load_run_config(cfg_file: str | os.PathLike | None = None, opts: Iterable[str] = ()) -> CfgNode:
    """Defaults -> YAML -> overrides, then every check; returns the frozen config."""
    cfg = load_config(cfg_file, opts)
    check_run_config(cfg)
    return cfg
