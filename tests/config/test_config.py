"""Config loading: name resolution, overrides, _BASE_, unknown keys, validation."""
import ast
import re
from pathlib import Path

import pytest
import torch

from stvit_video.config import available_configs, get_cfg_defaults, load_config, validate_config
from stvit_video.engine.config_check import check_run_config, load_run_config
from stvit_video.models import build_model, model_arch
from stvit_video.config.loader import resolve_config
from stvit_video.utils.errors import ConfigError
from tests.helpers.imports import modules_loaded_by

ROOT = Path(__file__).resolve().parents[2]


def test_short_names_resolve_to_shipped_files():
    assert resolve_config("kinetics400") == ROOT / "configs/kinetics400/default.yaml"
    assert resolve_config("kinetics400/swin_t_32x2") == ROOT / "configs/kinetics400/swin_t_32x2.yaml"
    assert resolve_config("swin_t_32x2") == ROOT / "configs/kinetics400/swin_t_32x2.yaml"
    assert resolve_config("swin_t_32x2.yaml") == ROOT / "configs/kinetics400/swin_t_32x2.yaml"


def test_a_path_is_taken_as_is(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.5\n")
    assert resolve_config(str(path)) == path
    assert load_config(str(path)).SOLVER.BASE_LR == 0.5


def test_unknown_name_suggests_close_names():
    with pytest.raises(ConfigError, match=r"swin_t_32x3'.*Did you mean .*swin_t_32x2.*--list-configs"):
        resolve_config("kinetics400/swin_t_32x3")


def test_default_kinetics400_is_stvit_r_swin_t_perframe():
    cfg = load_config("kinetics400")
    assert cfg.MODEL.ARCH == "stvit_r_swin3d_tiny_perframe"
    arch = model_arch(cfg)["kwargs"]
    assert arch["stvit"]["mode"] == "perframe" and arch["stvit"]["recovery"] is True
    assert arch["depths"] == (2, 2, 6, 2) and arch["embed_dim"] == 96
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (32, 2)
    assert cfg.is_frozen()


@pytest.mark.parametrize("name", sorted(available_configs()))
def test_every_shipped_config_merges_validates_and_runs_a_small_forward(name):
    cfg = load_run_config(name)
    # the config's own model at its own depths and heads, a quarter as wide, on a short clip
    narrow = cfg.clone()
    narrow.defrost()
    heads = model_arch(cfg)["kwargs"]["num_heads"]
    narrow.SWIN.EMBED_DIM, narrow.MODEL.NUM_CLASSES = 8 * heads[0], 5
    model = build_model(narrow).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 5)


def test_bases_are_hidden_from_the_list():
    names = available_configs()
    assert "kinetics400" in names and "kinetics400/swin_b_32x2" in names
    assert not any(n.rsplit("/", 1)[-1].startswith("_") for n in names)


def test_base_chain_merges_in_order(tmp_path):
    (tmp_path / "a.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_EPOCH: 7\nRNG_SEED: 1\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\nSOLVER:\n  BASE_LR: 0.2\n")
    (tmp_path / "c.yaml").write_text("_BASE_: b.yaml\nRNG_SEED: 3\n")
    cfg = load_config(str(tmp_path / "c.yaml"), ["SOLVER.MAX_EPOCH", "9"])
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH, cfg.RNG_SEED) == (0.2, 9, 3)
    assert cfg.SOLVER.WEIGHT_DECAY == get_cfg_defaults().SOLVER.WEIGHT_DECAY


def test_overrides_are_applied_last_and_override_the_variant():
    cfg = load_config("kinetics400/swin_b_32x2", ["SOLVER.WEIGHT_DECAY", "0.1", "SWIN.DEPTHS", "[2, 2, 6, 2]"])
    assert cfg.SOLVER.WEIGHT_DECAY == 0.1
    kwargs = model_arch(cfg)["kwargs"]
    assert kwargs["depths"] == (2, 2, 6, 2) and kwargs["embed_dim"] == 128  # the rest stays Swin-B


def test_unknown_override_key_names_the_closest_key():
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_LRR .*did you mean SOLVER\.BASE_LR\?"):
        load_config("kinetics400", ["SOLVER.BASE_LRR", "0.1"])
    with pytest.raises(ConfigError, match=r"SOLVR\.BASE_LR .*did you mean SOLVER\.BASE_LR\?"):
        load_config("kinetics400", ["SOLVR.BASE_LR", "0.1"])


def test_unknown_yaml_key_names_the_file_and_the_closest_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("_BASE_: " + str(ROOT / "configs/kinetics400/swin_t_32x2.yaml") + "\nTRAIN:\n  BATCH_SIZ: 8\n")
    with pytest.raises(ConfigError, match=r"TRAIN\.BATCH_SIZ in config file .*typo\.yaml; did you mean TRAIN\.BATCH_SIZE"):
        load_config(str(path))


def test_unknown_key_in_a_base_file_is_caught(tmp_path):
    (tmp_path / "base.yaml").write_text("MODEL:\n  NUM_CLASS: 10\n")
    (tmp_path / "top.yaml").write_text("_BASE_: base.yaml\n")
    with pytest.raises(ConfigError, match=r"MODEL\.NUM_CLASS .*did you mean MODEL\.NUM_CLASSES"):
        load_config(str(tmp_path / "top.yaml"))


def test_odd_override_list_is_an_error():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config("kinetics400", ["SOLVER.BASE_LR"])


def test_wrong_value_type_names_the_key():
    with pytest.raises(ConfigError, match="SOLVER.BASE_LR"):
        load_config("kinetics400", ["SOLVER.BASE_LR", "fast"])


def test_a_missing_yaml_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("overrides, message", [
    (["NUM_GPUS", "3", "TRAIN.BATCH_SIZE", "8"], r"TRAIN\.BATCH_SIZE = 8: .*divisible by NUM_GPUS x NUM_SHARDS = 3"),
    (["NUM_GPUS", "2", "NUM_SHARDS", "2", "TEST.BATCH_SIZE", "6"], r"TEST\.BATCH_SIZE = 6: .*= 4"),
    (["NUM_GPUS", "-1"], r"NUM_GPUS = -1"),
    (["NUM_SHARDS", "2", "SHARD_ID", "2"], r"SHARD_ID = 2: must be in \[0, NUM_SHARDS=2\)"),
    (["MODEL.ARCH", "resnet50"], r"MODEL\.ARCH = 'resnet50': not a model variant; use one of swin3d_tiny, "),
    (["MODEL.NUM_CLASSES", "-2"], r"MODEL\.NUM_CLASSES = -2: must be an integer >= 1, or 0"),
    (["DATA.TEST_SHORT_SIDE", "100"], r"DATA\.TEST_SHORT_SIDE = 100: must be 0 .* at least DATA.TEST_CROP_SIZE = 224"),
    (["DATA.TRAIN_CROP_SIZE", "300"], r"DATA\.TRAIN_CROP_SIZE = 300: must be <= .*TRAIN_JITTER_SCALES\[0\] = 256"),
    (["DATA.TRAIN_JITTER_SCALES", "[320, 256]"], r"DATA\.TRAIN_JITTER_SCALES = \[320, 256\]"),
    (["TEST.NUM_ENSEMBLE_VIEWS", "0"], r"TEST\.NUM_ENSEMBLE_VIEWS = 0: must be an integer >= 1"),
    (["TEST.NUM_SPATIAL_CROPS", "2"], r"TEST\.NUM_SPATIAL_CROPS = 2: must be 1 .* or 3"),
    (["DATA.DECODING_BACKEND", "opencv"], r"DATA\.DECODING_BACKEND = 'opencv': must be one of decord, pyav"),
    (["DATA.NUM_FRAMES", "0"], r"DATA\.NUM_FRAMES = 0"),
    (["DATA.MEAN", "[0.5, 0.5]"], r"DATA\.MEAN = \[0\.5, 0\.5\]: needs one value per channel"),
    (["DATA.STD", "[0.2, 0.0, 0.2]"], r"DATA\.STD .*must be > 0"),
    (["SWIN.NUM_HEADS", "[3, 6, 12]"], r"SWIN\.NUM_HEADS = \(3, 6, 12\) .*: needs one entry per stage"),
    (["SWIN.NUM_HEADS", "[5, 6, 12, 24]"], r"stage 0 has 96 channels, not divisible by 5 heads"),
    (["SWIN.WINDOW_SIZE", "[8, 7]"], r"SWIN\.WINDOW_SIZE = \(8, 7\) .*: must be three integers"),
    (["SWIN.DROP_PATH_RATE", "1.5"], r"SWIN\.DROP_PATH_RATE = 1\.5"),
    (["SWIN.STEM_CHANNELS", "[16, 32, 64]"], r"SWIN\.PATCH_SIZE = \(2, 4, 4\) .*with 3 stem layers .*\(T, 8, 8\)"),
    (["SWIN.STEM_CHANNELS", "[16, 0]"], r"SWIN\.STEM_CHANNELS = \(16, 0\) .*: must be integers >= 1"),
    (["SWIN.WEIGHT_INIT", "xavier"], r"SWIN\.WEIGHT_INIT = 'xavier' .*: must be one of swin, pytorch"),
    (["STVIT.MODE", "framewise"], r"STVIT\.MODE = 'framewise' .*: must be one of perframe, spatiotemporal"),
    (["STVIT.STAGE", "4"], r"STVIT\.STAGE = 4 .*: is not a stage index of depths \(2, 2, 6, 2\)"),
    (["STVIT.NUM_UNITS", "2"], r"STVIT\.NUM_UNITS = 2 .*: 2 units of 6 blocks do not fit a stage of depth 6 \(at most 1\)"),
    (["STVIT.SAMPLE_WINDOW_SIZE", "8"], r"STVIT\.SAMPLE_WINDOW_SIZE = 8 .*: more tokens per side than the window has \(7\)"),
    (["STVIT.TEMPORAL_POOL", "2"], r"STVIT\.TEMPORAL_POOL = 2 .*: must be 1 in mode 'perframe'"),
    (["MODEL.ARCH", "swin3d_tiny", "STVIT.NUM_UNITS", "1"], r"STVIT\.NUM_UNITS set, but MODEL\.ARCH = 'swin3d_tiny' has no semantic tokens"),
    (["STVIT.TEMPORAL_POOL", "0", "STVIT.MODE", "spatiotemporal"], r"STVIT\.TEMPORAL_POOL = 0"),
    (["STVIT.LAYER_SCALE_INIT", "-1.0"], r"STVIT\.LAYER_SCALE_INIT = -1\.0"),
    (["SOLVER.BASE_LR", "0.0"], r"SOLVER\.BASE_LR = 0\.0: must be > 0"),
    (["SOLVER.OPTIMIZING_METHOD", "lamb"], r"SOLVER\.OPTIMIZING_METHOD = 'lamb'"),
    (["SOLVER.WARMUP_EPOCHS", "40.0"], r"SOLVER\.WARMUP_EPOCHS = 40\.0: must be in \[0, SOLVER\.MAX_EPOCH = 30\)"),
    (["TRAIN.CHECKPOINT_TYPE", "caffe2"], r"TRAIN\.CHECKPOINT_TYPE = 'caffe2'"),
    (["TRAIN.AMP_DTYPE", "fp8"], r"TRAIN\.AMP_DTYPE = 'fp8': must be one of bf16, fp16"),
    (["TRAIN.ACCUM_STEPS", "0"], r"TRAIN\.ACCUM_STEPS = 0: must be an integer >= 1"),
    (["SOLVER.LR_SCALING", "cubic"], r"SOLVER\.LR_SCALING = 'cubic'"),
    (["TEST.ENSEMBLE_METHOD", "vote"], r"TEST\.ENSEMBLE_METHOD = 'vote': must be one of sum, max"),
    (["TEST.FAILED_VIEW_POLICY", "ignore"], r"TEST\.FAILED_VIEW_POLICY = 'ignore'"),
    (["DATA.MAX_BAD_VIDEO_FRACTION", "1.5"], r"DATA\.MAX_BAD_VIDEO_FRACTION = 1\.5"),
])
def test_validation_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config("kinetics400", overrides)


def test_validation_is_pure():
    cfg = load_config("kinetics400")
    before = cfg.dump()
    validate_config(cfg)
    check_run_config(cfg)
    validate_config(cfg)
    assert cfg.dump() == before


def test_the_config_package_imports_no_models_datasets_or_torch():
    code = ("from stvit_video.config import load_config\n"
            "cfg = load_config('kinetics400', ['SOLVER.BASE_LR', '0.5'])")
    assert modules_loaded_by(code, ("torch", "stvit_video.models", "stvit_video.datasets")) == []


def _attribute_reads(paths) -> set[tuple[str, str]]:
    """(parent, attribute) of every ``parent.ATTR`` read in the code (names, not strings or comments)."""
    reads = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                parent = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
                reads.add((parent.lower(), node.attr))
    return reads


def test_every_default_key_is_read_by_code_outside_the_config_package():
    """A key that nothing reads is a setting that silently does nothing."""
    code = [p for p in (ROOT / "stvit_video").rglob("*.py") if p.parent.name != "config"]
    reads = _attribute_reads(code + list((ROOT / "tools").glob("*.py")))
    defaults = get_cfg_defaults()
    # model keys are read by name through models/build.py's tables (SWIN.<KEY> -> <key> argument)
    from stvit_video.models.build import ARG_KEYS, STVIT_KEYS, TOME_KEYS

    by_table = set(ARG_KEYS.values()) | set(STVIT_KEYS.values()) | set(TOME_KEYS.values())
    unread = []
    for group, node in defaults.items():
        for leaf in (node if isinstance(node, dict) else [None]):
            key, parent = (f"{group}.{leaf}", group.lower()) if leaf else (group, "cfg")
            if key not in by_table and (parent, leaf or group) not in reads:
                unread.append(key)
    assert unread == []
    # and every key of the tables exists: a table entry without its key would read nothing
    assert sorted(k for k in by_table if not _has_key(defaults, k)) == []


def test_the_kinetics_configs_follow_the_official_video_swin_protocol():
    cfg = load_run_config("kinetics400")
    # the validation list, last.pyth, every 2nd raw frame, looping short videos, mmcv's cosine
    assert (cfg.TEST.SPLIT, cfg.TEST.CHECKPOINT_SELECTION) == ("val", "last")
    assert (cfg.DATA.TARGET_FPS, cfg.DATA.SAMPLING_RATE, cfg.DATA.OUT_OF_BOUND) == (0, 2, "loop")
    assert (cfg.SOLVER.LR_POLICY, cfg.SOLVER.PARAM_GROUP_RULE, cfg.SOLVER.WARMUP_START_FACTOR) == (
        "mmcv_cosine", "video_swin", 0.1)
    assert cfg.DIST.TIMEOUT_S == 1800 and cfg.SOLVER.BACKBONE_LR_MULT == 1.0  # from scratch
    assert load_run_config("kinetics400/swin_s_32x2").SWIN.DROP_PATH_RATE == 0.1  # official (mmaction2 1.x: 0.2)
    # the configs behind the paper's numbers start from ImageNet with the backbone at 0.1 x the LR
    for name, weights in (("swin_t_32x2_in1k", "swin_tiny_patch4_window7_224.pth"),
                          ("swin_s_32x2_in1k", "swin_small_patch4_window7_224.pth"),
                          ("swin_b_32x2_in22k", "swin_base_patch4_window7_224_22k.pth"),
                          ("stvit_r_swin_t_perframe_32x2_in1k", "swin_tiny_patch4_window7_224.pth")):
        pretrained = load_run_config(f"kinetics400/{name}")
        assert pretrained.TRAIN.CHECKPOINT_FILE_PATH == f"pretrained/{weights}", name
        assert (pretrained.TRAIN.CHECKPOINT_TYPE, pretrained.SOLVER.BACKBONE_LR_MULT) == ("swin2d", 0.1), name


def _has_key(cfg, key: str) -> bool:
    node = cfg
    for part in key.split("."):
        if part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not p.name.startswith("_")),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_gflops_a_config_header_quotes_are_the_registrys(path):
    """A config's first line quotes its model's GFLOPs per view; the registry (checked against
    fvcore by tests/models/test_registry.py) is the one source of the number."""
    from stvit_video.models.registry import VARIANTS

    header = path.read_text().splitlines()[0]
    quoted = re.findall(r"([0-9.]+) GFLOPs/view", header)
    arch = load_config(str(path)).MODEL.ARCH
    if not quoted:
        assert "GFLOPs" not in header, header
        return
    gflops = VARIANTS[arch].gflops
    assert abs(float(quoted[0]) - gflops) <= 0.05 + 1e-9, f"{path.name}: {header!r}, but {arch}: {gflops} GFLOPs/view"
