"""Parameter groups: STViT blocks in their own group, decay rules, backbone LR multiplier."""
import torch

from stvit_video.config import load_config
from stvit_video.engine.optimizer import build_optimizer, build_param_groups
from stvit_video.models import SwinTransformer3D

from tests.helpers.models import SWIN_MINI, stvit_model


def _by_role(groups):
    return {(g["role"], g["weight_decay"] > 0): g for g in groups}


def test_stgm_blocks_get_their_own_group_unaffected_by_the_backbone_multiplier():
    model = stvit_model(SWIN_MINI, use_global=True)
    groups = _by_role(build_param_groups(model, weight_decay=0.05, backbone_lr_mult=0.1))
    stgm_names = set(groups[("stgm", True)]["param_names"]) | set(groups[("stgm", False)]["param_names"])
    assert stgm_names == model.semantic_parameter_names()
    assert groups[("stgm", True)]["lr_mult"] == 1.0 and groups[("backbone", True)]["lr_mult"] == 0.1
    assert groups[("head", True)]["lr_mult"] == 1.0
    # every trainable parameter is in exactly one group
    all_names = [n for g in groups.values() for n in g["param_names"]]
    assert sorted(all_names) == sorted(n for n, _ in model.named_parameters())


def test_decay_excludes_1d_parameters_and_bias_tables_but_not_global_centres():
    model = stvit_model(SWIN_MINI, use_global=True)
    groups = build_param_groups(model, weight_decay=0.05)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["param_names"]}
    assert "layers.2.global_centres" in decayed
    assert "layers.2.blocks.1.attn.q.weight" in decayed and "head.fc.weight" in decayed
    for name in ("layers.2.blocks.1.layer_scale_1", "layers.2.blocks.1.norm1.weight", "head.fc.bias",
                 "layers.0.blocks.0.attn.relative_position_bias_table", "layers.0.blocks.0.attn.qkv.bias"):
        assert name not in decayed, name


def test_build_optimizer_applies_the_multipliers():
    cfg = load_config("kinetics400/swin_t_32x2", ["SOLVER.BACKBONE_LR_MULT", "0.1"])
    model = SwinTransformer3D(**SWIN_MINI)
    optimizer = build_optimizer(cfg, model, lr=0.002)
    assert isinstance(optimizer, torch.optim.AdamW)
    lrs = {(g["role"], g["weight_decay"]): g["lr"] for g in optimizer.param_groups}
    assert lrs[("backbone", 0.02)] == 0.0002 and lrs[("head", 0.02)] == 0.002


def test_the_video_swin_rule_reads_the_official_custom_keys_as_mmcv_does():
    """mmcv applies only the longest custom key a name contains: the bias tables get decay 0 and
    LR x 1.0 (not the backbone's 0.1); norms and biases are decayed with the backbone."""
    model = stvit_model(SWIN_MINI, use_global=True)
    groups = build_param_groups(model, weight_decay=0.02, backbone_lr_mult=0.1, stgm_lr_mult=1.0, rule="video_swin")
    by_name = {n: g for g in groups for n in g["param_names"]}
    table = by_name["layers.0.blocks.0.attn.relative_position_bias_table"]
    assert (table["role"], table["lr_mult"], table["weight_decay"]) == ("position_bias", 1.0, 0.0)
    for name in ("layers.0.blocks.0.norm1.weight", "layers.0.blocks.0.attn.qkv.bias", "patch_embed.proj.weight"):
        assert (by_name[name]["lr_mult"], by_name[name]["weight_decay"]) == (0.1, 0.02), name
    assert (by_name["head.fc.bias"]["lr_mult"], by_name["head.fc.bias"]["weight_decay"]) == (1.0, 0.02)
    stgm = by_name["layers.2.blocks.1.layer_scale_1"]
    assert (stgm["role"], stgm["lr_mult"], stgm["weight_decay"]) == ("stgm", 1.0, 0.02)
    assert sorted(by_name) == sorted(n for n, _ in model.named_parameters())
