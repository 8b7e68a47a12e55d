"""Start a job: output folder, merged-config dump, logging, seeding, then train and/or test."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stvit_video.utils.logging import setup_logging
from stvit_video.utils.seed import seed_everything


def prepare_output_dir(cfg: Any) -> Path:
    """Create OUTPUT_DIR and write the merged config to ``OUTPUT_DIR/config.yaml``."""
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(cfg.dump(), encoding="utf-8")
    return out


def launch_job(cfg: Any) -> None:
    """Run what the config enables: training if TRAIN.ENABLE, then testing if TEST.ENABLE."""
    out = prepare_output_dir(cfg)
    logger = setup_logging(out)
    logger.info("config written to %s", out / "config.yaml")
    seed_everything(cfg.RNG_SEED)
    if cfg.TRAIN.ENABLE:
        raise NotImplementedError(
            "training (TRAIN.ENABLE True): the trainer is not built yet; use --summary or --flops, "
            "or set TRAIN.ENABLE False")
    if cfg.TEST.ENABLE:
        raise NotImplementedError(
            "multi-view testing (TEST.ENABLE True): the tester is not built yet; use --summary or --flops, "
            "or set TEST.ENABLE False")
    logger.info("nothing to run: TRAIN.ENABLE and TEST.ENABLE are both False")
