"""Validation of the DATA / DATA_LOADER / AUG / MIXUP keys used by the data pipeline."""
import ast
from pathlib import Path

import pytest

from stvit_video.config import get_cfg_defaults, validate_config
from stvit_video.datasets import build_mixup, check_data_config
from stvit_video.utils.errors import ConfigError

DATASETS_DIR = Path(__file__).resolve().parents[2] / "stvit_video" / "datasets"


def _cfg(*opts):
    cfg = get_cfg_defaults()
    cfg.merge_from_list(list(opts))
    return cfg


def test_defaults_validate_and_are_not_mutated():
    cfg = _cfg()
    before = cfg.dump()
    validate_config(cfg)
    check_data_config(cfg)
    assert cfg.dump() == before


@pytest.mark.parametrize("opts, message", [
    (["DATA.DECODING_BACKEND", "opencv"], "DATA.DECODING_BACKEND = 'opencv': must be one of decord, pyav"),
    (["TRAIN.DATASET", "ucf101"], "TRAIN.DATASET = 'ucf101': must be one of kinetics"),
    (["TEST.DATASET", "hmdb"], "TEST.DATASET = 'hmdb': must be one of kinetics"),
    (["AUG.RE_MODE", "noise"], "AUG.RE_MODE = 'noise': must be one of pixel, rand, const"),
    (["AUG.ENABLE", True, "AUG.AA_TYPE", "rand-q3"], "AUG.AA_TYPE = 'rand-q3': cannot parse 'q3'"),
    (["AUG.ENABLE", True, "AUG.AA_TYPE", "auto-m7"], "AUG.AA_TYPE = 'auto-m7': must start with 'rand'"),
])
def test_choices_owned_by_the_data_package_name_key_value_and_choices(opts, message):
    with pytest.raises(ConfigError) as info:
        check_data_config(_cfg(*opts))
    assert message in str(info.value)


def test_rand_augment_string_is_checked_only_when_augmentation_is_on():
    check_data_config(_cfg("AUG.ENABLE", False, "AUG.AA_TYPE", "rand-q3"))
    check_data_config(_cfg("AUG.ENABLE", True, "AUG.AA_TYPE", ""))  # "" = RandAugment off
    check_data_config(_cfg("AUG.ENABLE", True, "AUG.AA_TYPE", "rand-m9-n2-p0.8", "DATA.DECODING_BACKEND", "pyav"))


@pytest.mark.parametrize("opts, key", [
    (["DATA.TRAIN_JITTER_SCALES_RELATIVE", [0.5]], "DATA.TRAIN_JITTER_SCALES_RELATIVE"),
    (["DATA.TRAIN_JITTER_SCALES_RELATIVE", [0.5, 1.5]], "DATA.TRAIN_JITTER_SCALES_RELATIVE"),
    (["DATA.TRAIN_JITTER_ASPECT_RELATIVE", [1.5, 0.5]], "DATA.TRAIN_JITTER_ASPECT_RELATIVE"),
    (["AUG.NUM_SAMPLE", 0], "AUG.NUM_SAMPLE"),
    (["AUG.NUM_SAMPLE", 3], "AUG.NUM_SAMPLE"),  # 64 clips per GPU are not a multiple of 3
    (["AUG.RE_PROB", 1.5], "AUG.RE_PROB"),
    (["MIXUP.ALPHA", -0.1], "MIXUP.ALPHA"),
    (["MIXUP.SWITCH_PROB", 2.0], "MIXUP.SWITCH_PROB"),
    (["MIXUP.ENABLE", True, "MIXUP.ALPHA", 0.0, "MIXUP.CUTMIX_ALPHA", 0.0], "MIXUP.ENABLE"),
    (["MIXUP.ENABLE", True, "TRAIN.BATCH_SIZE", 9], "MIXUP.ENABLE"),
])
def test_generic_data_ranges_name_the_key(opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(_cfg(*opts))


def test_mixup_built_only_when_enabled():
    assert build_mixup(_cfg()) is None
    assert build_mixup(_cfg("MIXUP.ENABLE", True)) is not None


def test_datasets_never_import_models():
    for path in sorted(DATASETS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("stvit_video.models") for n in names), f"{path.name} imports {names}"
