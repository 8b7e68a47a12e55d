"""Validation of the DATA / DATA_LOADER / AUG / MIXUP keys used by the data pipeline."""
import pytest

from stvit_video.config import assert_and_infer_cfg, get_cfg_defaults
from stvit_video.datasets import build_mixup
from stvit_video.utils.errors import ConfigError


def _cfg(*opts):
    cfg = get_cfg_defaults()
    cfg.merge_from_list(list(opts))
    return cfg


def test_defaults_validate_and_are_not_mutated():
    cfg = _cfg()
    before = cfg.dump()
    assert_and_infer_cfg(cfg)
    assert cfg.dump() == before


@pytest.mark.parametrize("opts, key", [
    (["DATA.TRAIN_JITTER_SCALES_RELATIVE", [0.5]], "DATA.TRAIN_JITTER_SCALES_RELATIVE"),
    (["DATA.TRAIN_JITTER_SCALES_RELATIVE", [0.5, 1.5]], "DATA.TRAIN_JITTER_SCALES_RELATIVE"),
    (["DATA.TRAIN_JITTER_ASPECT_RELATIVE", [1.5, 0.5]], "DATA.TRAIN_JITTER_ASPECT_RELATIVE"),
    (["TRAIN.DATASET", "ucf101"], "TRAIN.DATASET"),
    (["AUG.NUM_SAMPLE", 0], "AUG.NUM_SAMPLE"),
    (["AUG.NUM_SAMPLE", 3], "AUG.NUM_SAMPLE"),  # 64 clips per GPU are not a multiple of 3
    (["AUG.ENABLE", True, "AUG.AA_TYPE", "rand-q3"], "AUG.AA_TYPE"),
    (["AUG.RE_PROB", 1.5], "AUG.RE_PROB"),
    (["AUG.RE_MODE", "noise"], "AUG.RE_MODE"),
    (["MIXUP.ALPHA", -0.1], "MIXUP.ALPHA"),
    (["MIXUP.SWITCH_PROB", 2.0], "MIXUP.SWITCH_PROB"),
    (["MIXUP.LABEL_SMOOTH_VALUE", 1.0], "MIXUP.LABEL_SMOOTH_VALUE"),
    (["MIXUP.ENABLE", True, "MIXUP.ALPHA", 0.0, "MIXUP.CUTMIX_ALPHA", 0.0], "MIXUP.ENABLE"),
    (["MIXUP.ENABLE", True, "TRAIN.BATCH_SIZE", 9], "MIXUP.ENABLE"),
])
def test_bad_values_name_the_key(opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        assert_and_infer_cfg(_cfg(*opts))


def test_mixup_built_only_when_enabled():
    assert build_mixup(_cfg()) is None
    assert build_mixup(_cfg("MIXUP.ENABLE", True)) is not None
