"""Generic validation of a merged config: types, ranges and relations between keys.

Pure: it reads the config and raises, never mutates it. Derived values (e.g. the learning
rate scaled to the global batch) are computed once by the engine, logged, and never written
back, so calling this twice is harmless.

Choices owned by other packages (model variants, decoder backends, datasets, optimizers,
checkpoint formats) are checked by those packages' own validators, which
:func:`stvit_video.engine.config_check.load_run_config` runs after this one: the config
package imports neither models nor datasets.
"""
from __future__ import annotations

from typing import Any, Callable

from fvcore.common.config import CfgNode

from stvit_video.config.access import get_key
from stvit_video.utils.errors import ConfigError
from stvit_video.utils.view_grid import CROP_CHOICES

def _require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r}: {why}")


def _positive_int(cfg: CfgNode, key: str) -> None:
    value = get_key(cfg, key)
    _require(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")


def _check_run(cfg: CfgNode) -> None:
    _require(cfg.NUM_GPUS >= 0, "NUM_GPUS", cfg.NUM_GPUS, "must be >= 0 (0 = CPU)")
    _positive_int(cfg, "NUM_SHARDS")
    _require(0 <= cfg.SHARD_ID < cfg.NUM_SHARDS, "SHARD_ID", cfg.SHARD_ID,
             f"must be in [0, NUM_SHARDS={cfg.NUM_SHARDS})")
    _positive_int(cfg, "LOG_PERIOD")
    for key in ("TRAIN.ACCUM_STEPS", "TRAIN.EVAL_PERIOD", "TRAIN.CHECKPOINT_PERIOD"):
        _positive_int(cfg, key)
    for key in ("TRAIN.CHECKPOINT_PERIOD_ITERS", "TEST.MAX_VIEWS_PER_BATCH", "TEST.VISUALIZE"):
        value = get_key(cfg, key)
        _require(isinstance(value, int) and value >= 0, key, value, "must be an integer >= 0 (0 = off)")
    _require(cfg.DIST.TIMEOUT_S > 0, "DIST.TIMEOUT_S", cfg.DIST.TIMEOUT_S, "must be > 0 seconds")
    world = max(cfg.NUM_GPUS, 1) * cfg.NUM_SHARDS
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        _positive_int(cfg, key)
        value = get_key(cfg, key)
        _require(value % world == 0, key, value,
                 f"the global batch must be divisible by NUM_GPUS x NUM_SHARDS = {world}")


def _check_data(cfg: CfgNode) -> None:
    for key in ("DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TRAIN_CROP_SIZE",
                "DATA.TEST_CROP_SIZE", "TEST.NUM_ENSEMBLE_VIEWS"):
        _positive_int(cfg, key)
    _require(cfg.DATA.TARGET_FPS >= 0, "DATA.TARGET_FPS", cfg.DATA.TARGET_FPS,
             "must be > 0 (a frame rate) or 0 (raw frames)")
    short = cfg.DATA.TEST_SHORT_SIDE
    _require(short == 0 or short >= cfg.DATA.TEST_CROP_SIZE, "DATA.TEST_SHORT_SIDE", short,
             f"must be 0 (= DATA.TEST_CROP_SIZE) or at least DATA.TEST_CROP_SIZE = {cfg.DATA.TEST_CROP_SIZE}")
    scales = list(cfg.DATA.TRAIN_JITTER_SCALES)
    _require(len(scales) == 2 and 0 < scales[0] <= scales[1], "DATA.TRAIN_JITTER_SCALES", scales,
             "must be [min, max] short sides with 0 < min <= max")
    _require(cfg.DATA.TRAIN_CROP_SIZE <= scales[0], "DATA.TRAIN_CROP_SIZE", cfg.DATA.TRAIN_CROP_SIZE,
             f"must be <= the smallest short side DATA.TRAIN_JITTER_SCALES[0] = {scales[0]}")
    channels = cfg.DATA.INPUT_CHANNEL_NUM
    for key in ("DATA.MEAN", "DATA.STD"):
        value = list(get_key(cfg, key))
        _require(len(value) == channels, key, value,
                 f"needs one value per channel (DATA.INPUT_CHANNEL_NUM = {channels})")
    _require(all(s > 0 for s in cfg.DATA.STD), "DATA.STD", list(cfg.DATA.STD), "must be > 0")
    _require(0.0 <= cfg.DATA.MAX_BAD_VIDEO_FRACTION <= 1.0, "DATA.MAX_BAD_VIDEO_FRACTION",
             cfg.DATA.MAX_BAD_VIDEO_FRACTION, "must be in [0, 1]")
    _require(cfg.TEST.NUM_SPATIAL_CROPS in CROP_CHOICES, "TEST.NUM_SPATIAL_CROPS",
             cfg.TEST.NUM_SPATIAL_CROPS, "must be 1 (centre) or 3 (left/centre/right)")
    _positive_int(cfg, "DATA_LOADER.NUM_RETRIES")
    _positive_int(cfg, "DATA_LOADER.PREFETCH_FACTOR")
    _require(cfg.DATA_LOADER.NUM_WORKERS >= 0, "DATA_LOADER.NUM_WORKERS",
             cfg.DATA_LOADER.NUM_WORKERS, "must be >= 0")
    relative = list(cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE)
    _require(not relative or (len(relative) == 2 and 0 < relative[0] <= relative[1] <= 1),
             "DATA.TRAIN_JITTER_SCALES_RELATIVE", relative,
             "must be [] (off) or [min, max] area fractions with 0 < min <= max <= 1")
    aspect = list(cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE)
    _require(len(aspect) == 2 and 0 < aspect[0] <= aspect[1], "DATA.TRAIN_JITTER_ASPECT_RELATIVE",
             aspect, "must be [min, max] aspect ratios with 0 < min <= max")


def _check_aug(cfg: CfgNode) -> None:
    _positive_int(cfg, "AUG.NUM_SAMPLE")
    _positive_int(cfg, "DATA.NUM_REPEATED_SAMPLES")
    _require(cfg.DATA.REPEATED_SAMPLE_WINDOW >= 1.0, "DATA.REPEATED_SAMPLE_WINDOW", cfg.DATA.REPEATED_SAMPLE_WINDOW,
             "must be >= 1.0 (a multiple of the clip span)")
    per_rank = cfg.TRAIN.BATCH_SIZE // (max(cfg.NUM_GPUS, 1) * cfg.NUM_SHARDS)
    clips_per_item = cfg.AUG.NUM_SAMPLE * cfg.DATA.NUM_REPEATED_SAMPLES
    _require(per_rank % clips_per_item == 0, "AUG.NUM_SAMPLE x DATA.NUM_REPEATED_SAMPLES", clips_per_item,
             f"must divide the per-GPU batch TRAIN.BATCH_SIZE / GPUs = {per_rank} (it counts clips)")
    _require(0.0 <= cfg.AUG.RE_PROB <= 1.0, "AUG.RE_PROB", cfg.AUG.RE_PROB, "must be in [0, 1]")
    for key in ("MIXUP.ALPHA", "MIXUP.CUTMIX_ALPHA"):
        _require(get_key(cfg, key) >= 0, key, get_key(cfg, key), "must be >= 0 (0 = off)")
    for key in ("MIXUP.PROB", "MIXUP.SWITCH_PROB"):
        _require(0.0 <= get_key(cfg, key) <= 1.0, key, get_key(cfg, key), "must be in [0, 1]")
    _require(0.0 <= cfg.TRAIN.LABEL_SMOOTHING < 1.0, "TRAIN.LABEL_SMOOTHING",
             cfg.TRAIN.LABEL_SMOOTHING, "must be in [0, 1)")
    if cfg.MIXUP.ENABLE:
        _require(cfg.MIXUP.ALPHA > 0 or cfg.MIXUP.CUTMIX_ALPHA > 0, "MIXUP.ENABLE", True,
                 "needs MIXUP.ALPHA > 0 or MIXUP.CUTMIX_ALPHA > 0")
        _require(per_rank % 2 == 0, "MIXUP.ENABLE", True,
                 f"mixes each clip with the reversed batch: the per-GPU batch TRAIN.BATCH_SIZE / GPUs "
                 f"= {per_rank} must be even")


def _check_model(cfg: CfgNode) -> None:
    classes = cfg.MODEL.NUM_CLASSES
    _require(isinstance(classes, int) and classes >= 0, "MODEL.NUM_CLASSES", classes,
             "must be an integer >= 1, or 0 (= the number of classes in DATA.PATH_TO_DATA_DIR's classnames.txt)")
    _positive_int(cfg, "DATA.INPUT_CHANNEL_NUM")


def _check_solver(cfg: CfgNode) -> None:
    _require(cfg.SOLVER.BASE_LR > 0, "SOLVER.BASE_LR", cfg.SOLVER.BASE_LR, "must be > 0")
    _require(cfg.SOLVER.WEIGHT_DECAY >= 0, "SOLVER.WEIGHT_DECAY", cfg.SOLVER.WEIGHT_DECAY, "must be >= 0")
    _positive_int(cfg, "SOLVER.MAX_EPOCH")
    _require(0 <= cfg.SOLVER.WARMUP_EPOCHS < cfg.SOLVER.MAX_EPOCH, "SOLVER.WARMUP_EPOCHS",
             cfg.SOLVER.WARMUP_EPOCHS, f"must be in [0, SOLVER.MAX_EPOCH = {cfg.SOLVER.MAX_EPOCH})")
    _positive_int(cfg, "SOLVER.REFERENCE_BATCH_SIZE")
    for key in ("SOLVER.WARMUP_START_FACTOR", "SOLVER.COSINE_END_FACTOR", "SOLVER.CLIP_GRAD_NORM"):
        _require(get_key(cfg, key) >= 0, key, get_key(cfg, key), "must be >= 0")
    for key in ("SOLVER.BACKBONE_LR_MULT", "SOLVER.STGM_LR_MULT"):
        _require(get_key(cfg, key) >= 0, key, get_key(cfg, key), "must be >= 0")


CHECKS: tuple[Callable[[CfgNode], None], ...] = (_check_run, _check_data, _check_aug, _check_model, _check_solver)


def validate_config(cfg: CfgNode) -> CfgNode:
    """Check the generic rules; raise :class:`ConfigError` naming the first bad key.

    Returns the same (unchanged) config for chaining.
    """
    for check in CHECKS:
        check(cfg)
    return cfg
