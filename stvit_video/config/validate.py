"""Validation of a merged config. Pure: it reads the config and raises, never mutates it.

Derived values (e.g. the learning rate scaled to the global batch) are computed once by the
engine, logged, and never written back here, so calling this twice is harmless.
"""
from __future__ import annotations

from typing import Any, Callable

from fvcore.common.config import CfgNode

from stvit_video.utils.errors import ConfigError

DECODING_BACKENDS = ("decord", "pyav")
ERASE_MODES = ("pixel", "rand", "const")
STVIT_MODES = ("perframe", "spatiotemporal")
OPTIMIZERS = ("adamw", "sgd")
CHECKPOINT_TYPES = ("native", "video_swin", "swin2d")


def _require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r}: {why}")


def _positive_int(cfg: CfgNode, key: str) -> None:
    value = _get(cfg, key)
    _require(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")


def _get(cfg: CfgNode, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _one_of(cfg: CfgNode, key: str, choices: tuple[str, ...]) -> None:
    value = _get(cfg, key)
    _require(value in choices, key, value, f"must be one of {', '.join(choices)}")


def _check_run(cfg: CfgNode) -> None:
    _require(cfg.NUM_GPUS >= 0, "NUM_GPUS", cfg.NUM_GPUS, "must be >= 0 (0 = CPU)")
    _positive_int(cfg, "NUM_SHARDS")
    _require(0 <= cfg.SHARD_ID < cfg.NUM_SHARDS, "SHARD_ID", cfg.SHARD_ID,
             f"must be in [0, NUM_SHARDS={cfg.NUM_SHARDS})")
    _positive_int(cfg, "LOG_PERIOD")
    world = max(cfg.NUM_GPUS, 1) * cfg.NUM_SHARDS
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        _positive_int(cfg, key)
        value = _get(cfg, key)
        _require(value % world == 0, key, value,
                 f"the global batch must be divisible by NUM_GPUS x NUM_SHARDS = {world}")


def _check_data(cfg: CfgNode) -> None:
    _one_of(cfg, "DATA.DECODING_BACKEND", DECODING_BACKENDS)
    for key in ("DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TRAIN_CROP_SIZE",
                "DATA.TEST_CROP_SIZE", "DATA.INPUT_CHANNEL_NUM", "TEST.NUM_ENSEMBLE_VIEWS"):
        _positive_int(cfg, key)
    _require(cfg.DATA.TARGET_FPS > 0, "DATA.TARGET_FPS", cfg.DATA.TARGET_FPS, "must be > 0")
    scales = list(cfg.DATA.TRAIN_JITTER_SCALES)
    _require(len(scales) == 2 and 0 < scales[0] <= scales[1], "DATA.TRAIN_JITTER_SCALES", scales,
             "must be [min, max] short sides with 0 < min <= max")
    _require(cfg.DATA.TRAIN_CROP_SIZE <= scales[0], "DATA.TRAIN_CROP_SIZE", cfg.DATA.TRAIN_CROP_SIZE,
             f"must be <= the smallest short side DATA.TRAIN_JITTER_SCALES[0] = {scales[0]}")
    channels = cfg.DATA.INPUT_CHANNEL_NUM
    for key in ("DATA.MEAN", "DATA.STD"):
        value = list(_get(cfg, key))
        _require(len(value) == channels, key, value,
                 f"needs one value per channel (DATA.INPUT_CHANNEL_NUM = {channels})")
    _require(all(s > 0 for s in cfg.DATA.STD), "DATA.STD", list(cfg.DATA.STD), "must be > 0")
    _require(cfg.TEST.NUM_SPATIAL_CROPS in (1, 3), "TEST.NUM_SPATIAL_CROPS",
             cfg.TEST.NUM_SPATIAL_CROPS, "must be 1 (centre) or 3 (left/centre/right)")
    _positive_int(cfg, "DATA_LOADER.NUM_RETRIES")
    _require(cfg.DATA_LOADER.NUM_WORKERS >= 0, "DATA_LOADER.NUM_WORKERS",
             cfg.DATA_LOADER.NUM_WORKERS, "must be >= 0")
    relative = list(cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE)
    _require(not relative or (len(relative) == 2 and 0 < relative[0] <= relative[1] <= 1),
             "DATA.TRAIN_JITTER_SCALES_RELATIVE", relative,
             "must be [] (off) or [min, max] area fractions with 0 < min <= max <= 1")
    aspect = list(cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE)
    _require(len(aspect) == 2 and 0 < aspect[0] <= aspect[1], "DATA.TRAIN_JITTER_ASPECT_RELATIVE",
             aspect, "must be [min, max] aspect ratios with 0 < min <= max")
    from stvit_video.datasets.kinetics import DATASETS  # torch-only import

    for key in ("TRAIN.DATASET", "TEST.DATASET"):
        _one_of(cfg, key, tuple(DATASETS))


def _check_aug(cfg: CfgNode) -> None:
    _positive_int(cfg, "AUG.NUM_SAMPLE")
    per_rank = cfg.TRAIN.BATCH_SIZE // (max(cfg.NUM_GPUS, 1) * cfg.NUM_SHARDS)
    _require(per_rank % cfg.AUG.NUM_SAMPLE == 0, "AUG.NUM_SAMPLE", cfg.AUG.NUM_SAMPLE,
             f"must divide the per-GPU batch TRAIN.BATCH_SIZE / GPUs = {per_rank} (it counts clips)")
    if cfg.AUG.ENABLE and cfg.AUG.AA_TYPE:
        from stvit_video.datasets.transforms import parse_rand_augment  # raises ConfigError

        parse_rand_augment(cfg.AUG.AA_TYPE)
    _require(0.0 <= cfg.AUG.RE_PROB <= 1.0, "AUG.RE_PROB", cfg.AUG.RE_PROB, "must be in [0, 1]")
    _one_of(cfg, "AUG.RE_MODE", ERASE_MODES)
    for key in ("MIXUP.ALPHA", "MIXUP.CUTMIX_ALPHA"):
        _require(_get(cfg, key) >= 0, key, _get(cfg, key), "must be >= 0 (0 = off)")
    for key in ("MIXUP.PROB", "MIXUP.SWITCH_PROB"):
        _require(0.0 <= _get(cfg, key) <= 1.0, key, _get(cfg, key), "must be in [0, 1]")
    _require(0.0 <= cfg.MIXUP.LABEL_SMOOTH_VALUE < 1.0, "MIXUP.LABEL_SMOOTH_VALUE",
             cfg.MIXUP.LABEL_SMOOTH_VALUE, "must be in [0, 1)")
    if cfg.MIXUP.ENABLE:
        _require(cfg.MIXUP.ALPHA > 0 or cfg.MIXUP.CUTMIX_ALPHA > 0, "MIXUP.ENABLE", True,
                 "needs MIXUP.ALPHA > 0 or MIXUP.CUTMIX_ALPHA > 0")
        _require(per_rank % 2 == 0, "MIXUP.ENABLE", True,
                 f"mixes each clip with the reversed batch: the per-GPU batch TRAIN.BATCH_SIZE / GPUs "
                 f"= {per_rank} must be even")


def _check_model(cfg: CfgNode) -> None:
    from stvit_video.models.build import MODEL_ARCHS  # torch-only import

    _one_of(cfg, "MODEL.ARCH", tuple(MODEL_ARCHS))
    _positive_int(cfg, "MODEL.NUM_CLASSES")
    _require(0.0 <= cfg.MODEL.DROPOUT_RATE < 1.0, "MODEL.DROPOUT_RATE", cfg.MODEL.DROPOUT_RATE,
             "must be in [0, 1)")
    depths, heads = list(cfg.SWIN.DEPTHS), list(cfg.SWIN.NUM_HEADS)
    _require(len(depths) == len(heads) and len(depths) >= 1, "SWIN.NUM_HEADS", heads,
             f"needs one entry per stage of SWIN.DEPTHS = {depths}")
    _require(all(d >= 1 for d in depths), "SWIN.DEPTHS", depths, "every stage needs >= 1 block")
    for i, h in enumerate(heads):
        dim = cfg.SWIN.EMBED_DIM * 2**i
        _require(h >= 1 and dim % h == 0, "SWIN.NUM_HEADS", heads,
                 f"stage {i} has {dim} channels, not divisible by {h} heads")
    for key in ("SWIN.PATCH_SIZE", "SWIN.WINDOW_SIZE"):
        value = list(_get(cfg, key))
        _require(len(value) == 3 and all(isinstance(v, int) and v >= 1 for v in value), key, value,
                 "must be three integers >= 1 (T, H, W)")
    _require(0.0 <= cfg.SWIN.DROP_PATH_RATE < 1.0, "SWIN.DROP_PATH_RATE", cfg.SWIN.DROP_PATH_RATE,
             "must be in [0, 1)")
    _one_of(cfg, "STVIT.MODE", STVIT_MODES)
    if cfg.MODEL.ARCH == "stvit_swin3d":
        _check_stvit(cfg, depths)


def _check_stvit(cfg: CfgNode, depths: list[int]) -> None:
    from stvit_video.models.stvit import UNIT_DEPTH  # torch-only import

    stage = cfg.STVIT.STAGE
    _require(isinstance(stage, int) and 0 <= stage < len(depths), "STVIT.STAGE", stage,
             f"must be a stage index in [0, {len(depths)}) of SWIN.DEPTHS = {depths}")
    units = cfg.STVIT.NUM_UNITS
    _require(isinstance(units, int) and 1 <= units <= depths[stage] // UNIT_DEPTH, "STVIT.NUM_UNITS", units,
             f"each unit replaces {UNIT_DEPTH} blocks; stage {stage} has {depths[stage]} (SWIN.DEPTHS), so 1 to "
             f"{depths[stage] // UNIT_DEPTH} units")
    window = min(cfg.SWIN.WINDOW_SIZE[1], cfg.SWIN.WINDOW_SIZE[2])
    s = cfg.STVIT.SAMPLE_WINDOW_SIZE
    _require(isinstance(s, int) and 1 <= s <= window, "STVIT.SAMPLE_WINDOW_SIZE", s,
             f"must be an integer in [1, {window}] (tokens per window side, window from SWIN.WINDOW_SIZE)")
    _positive_int(cfg, "STVIT.TEMPORAL_POOL")
    _require(cfg.STVIT.MODE == "spatiotemporal" or cfg.STVIT.TEMPORAL_POOL == 1, "STVIT.TEMPORAL_POOL",
             cfg.STVIT.TEMPORAL_POOL, "must be 1 with STVIT.MODE perframe (use spatiotemporal to pool slices)")
    _require(cfg.STVIT.LAYER_SCALE_INIT >= 0, "STVIT.LAYER_SCALE_INIT", cfg.STVIT.LAYER_SCALE_INIT, "must be >= 0")


def _check_solver(cfg: CfgNode) -> None:
    _one_of(cfg, "SOLVER.OPTIMIZING_METHOD", OPTIMIZERS)
    _require(cfg.SOLVER.BASE_LR > 0, "SOLVER.BASE_LR", cfg.SOLVER.BASE_LR, "must be > 0")
    _require(cfg.SOLVER.WEIGHT_DECAY >= 0, "SOLVER.WEIGHT_DECAY", cfg.SOLVER.WEIGHT_DECAY, "must be >= 0")
    _positive_int(cfg, "SOLVER.MAX_EPOCH")
    _require(0 <= cfg.SOLVER.WARMUP_EPOCHS <= cfg.SOLVER.MAX_EPOCH, "SOLVER.WARMUP_EPOCHS",
             cfg.SOLVER.WARMUP_EPOCHS, f"must be in [0, SOLVER.MAX_EPOCH = {cfg.SOLVER.MAX_EPOCH}]")
    for key in ("SOLVER.BACKBONE_LR_MULT", "SOLVER.STGM_LR_MULT"):
        _require(_get(cfg, key) >= 0, key, _get(cfg, key), "must be >= 0")
    _one_of(cfg, "TRAIN.CHECKPOINT_TYPE", CHECKPOINT_TYPES)


CHECKS: tuple[Callable[[CfgNode], None], ...] = (_check_run, _check_data, _check_aug, _check_model, _check_solver)


def assert_and_infer_cfg(cfg: CfgNode) -> CfgNode:
    """Validate a merged config; raise :class:`ConfigError` naming the first bad key.

    Returns the same (unchanged) config for chaining.
    """
    for check in CHECKS:
        check(cfg)
    return cfg
