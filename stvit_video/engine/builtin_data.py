"""Built-in data sets a job can create for itself (``DATA.GENERATE_IF_MISSING``).

``mini_kinetics``: the motion-only mini-Kinetics of :mod:`data_prep.synthetic`, written to
``DATA.PATH_TO_DATA_DIR/source`` in the official annotation + CVDF layout and prepared by
``data_prep all`` into ``DATA.PATH_TO_DATA_DIR`` (lists, class names, resized videos), exactly
as a user prepares Kinetics. Nothing happens when the folder already has its ``train.csv``.
"""
from __future__ import annotations

import logging
from pathlib import Path

from fvcore.common.config import CfgNode

from stvit_video.utils.errors import DataError

__all__ = ["BUILTIN_DATASETS", "ensure_builtin_data"]

logger = logging.getLogger(__name__)

# DATA.GENERATE_IF_MISSING choices ("" = never)
BUILTIN_DATASETS = ("", "mini_kinetics")


def ensure_builtin_data(cfg: CfgNode) -> bool:
    """Create the built-in data set of ``DATA.GENERATE_IF_MISSING`` if its lists are missing.

    Returns:
        True if it was created now.

    Raises:
        DataError: generating or preparing it failed (the message says which step).
    """
    if not cfg.DATA.GENERATE_IF_MISSING or (Path(cfg.DATA.PATH_TO_DATA_DIR) / "train.csv").is_file():
        return False
    from data_prep.cli import main as data_prep  # only jobs that generate data need data_prep

    root = Path(cfg.DATA.PATH_TO_DATA_DIR)
    source = root / "source"
    logger.info("DATA.GENERATE_IF_MISSING %s: %s has no train.csv; generating the built-in mini-Kinetics in %s",
                cfg.DATA.GENERATE_IF_MISSING, root, source)
    if data_prep(["synthetic", "--out", str(source), "--no-next-step"]) != 0:
        raise DataError(f"DATA.GENERATE_IF_MISSING: python -m data_prep synthetic --out {source} failed (see above)")
    prepare = ["all", "--annotations", str(source / "annotations"), "--raw", str(source / "raw"), "--out", str(root),
               "--short-side", str(max(cfg.DATA.TRAIN_JITTER_SCALES)), "--backend", cfg.DATA.DECODING_BACKEND,
               "--no-next-step"]
    if data_prep(prepare) != 0:
        raise DataError(f"DATA.GENERATE_IF_MISSING: python -m data_prep {' '.join(prepare)} failed (see above)")
    return True
