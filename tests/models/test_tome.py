"""ToMe inside the Video Swin: matching, merging, proportional attention, the mask rule, the
Swin equivalence at ratio 0, strict Swin checkpoints, gradients, FLOPs and the config keys."""
import dataclasses

import pytest
import torch

from stvit_video.config import get_cfg_defaults
from stvit_video.models import STViTConfig, SwinTransformer3D, ToMeConfig, create_model, get_variant
from stvit_video.models.build import build_model_from_arch, check_model_config, model_arch
from stvit_video.models.swin3d import WindowAttention3D, shifted_window_mask, window_partition
from stvit_video.models.tome import (
    MergePlan,
    MergeRound,
    MergeSchedule,
    bipartite_soft_matching,
    match_tokens,
    merge_bias,
    merge_schedule,
    merge_tokens,
    merged_window_attention,
    unmerge_tokens,
)
from stvit_video.utils.errors import ConfigError, InvalidArgument
from stvit_video.utils.flops import count_flops

from tests.helpers.models import SWIN_MINI


def _one_round(r):
    return MergeSchedule(rounds=(MergeRound(pool_start=0, r=r, allowed=None),))


def test_matching_merges_the_r_most_similar_pairs():
    # A = tokens 0, 2, 4; B = tokens 1, 3, 5
    a0, a2, a4 = [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]
    b1, b3, b5 = [1.0, 0.01], [0.2, 1.0], [1.0, -1.0]
    metric = torch.tensor([[a0, b1, a2, b3, a4, b5]])
    # r = 2: a0 -> b1 (cos ~1) and a2 -> b3 (0.98); a4 (best 0.0, b5) stays; kept A first, then B
    assert bipartite_soft_matching(metric, 2).tolist() == [[1, 1, 2, 2, 0, 3]]
    # r = 1: only a0 merges; the kept A tokens are ordered by similarity (a2 before a4)
    assert bipartite_soft_matching(metric, 1).tolist() == [[2, 2, 0, 3, 1, 4]]
    # two A tokens with the same best partner both merge into it: a token of size 3
    metric = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.3], [1.0, 0.02], [0.0, -1.0]]])
    plan = match_tokens(metric, _one_round(2))
    assert plan.slot.tolist() == [[1, 1, 0, 2, 1, 3]] and plan.size.tolist() == [[1.0, 3.0, 1.0, 1.0]]


def test_a_pool_start_keeps_the_earlier_tokens_in_place():
    metric = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.01], [5.0, 5.0], [-1.0, 2.0]]])
    # pool = tokens 1..4: A = 1, 3; B = 2, 4; token 1 merges into token 2
    assert bipartite_soft_matching(metric, 1, pool_start=1).tolist() == [[0, 2, 2, 1, 3]]


def test_merge_and_unmerge_are_size_weighted_and_round_trip():
    torch.manual_seed(0)
    G, N, C = 3, 20, 4
    schedule = merge_schedule((1, 4, 5), (1, 4, 5), (1, 4, 5), (0, 0, 0), r=13)
    assert [rnd.r for rnd in schedule.rounds] == [9, 4]  # more than half a window: two rounds
    plan = match_tokens(torch.randn(G, N, C), schedule)
    M = N - 13
    assert plan.size.shape == (G, M) and plan.size.sum(1).tolist() == [N] * G
    x = torch.randn(G, N, C)
    merged = merge_tokens(x, plan)
    # a merged token is the mean of its members, so the size-weighted sum is the total
    torch.testing.assert_close((merged * plan.size.unsqueeze(-1)).sum(1), x.sum(1))
    back = unmerge_tokens(merged, plan)
    for g in range(G):
        for n in range(N):
            members = plan.slot[g] == plan.slot[g, n]
            torch.testing.assert_close(back[g, n], x[g, members].mean(0))
    y = torch.randn(G, M, C)
    torch.testing.assert_close(merge_tokens(unmerge_tokens(y, plan), plan), y)


def test_proportional_attention_is_plain_attention_when_all_sizes_are_1():
    torch.manual_seed(0)
    attn = WindowAttention3D(dim=16, window_size=(2, 3, 3), num_heads=2).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(std=1.0)
    window, nW, B, N = (2, 3, 3), 8, 2, 18
    mask = shifted_window_mask((4, 6, 6), window, (1, 1, 1), torch.device("cpu"))
    x = torch.randn(B * nW, N, 16)
    identity = MergePlan(slot=torch.arange(N).expand(B * nW, N), size=torch.ones(B * nW, N))
    bias = attn.relative_position_bias(window).unsqueeze(0) + mask.unsqueeze(1)
    merged_bias = merge_bias(bias, identity)
    assert torch.equal(merged_bias.view(B, nW, 2, N, N), bias.expand(B, nW, 2, N, N))
    with torch.no_grad():
        torch.testing.assert_close(merged_window_attention(attn, x, merged_bias, identity.size),
                                   attn(x, window, mask), rtol=0, atol=1e-6)


def test_a_merged_token_weighs_as_its_size_in_copies():
    torch.manual_seed(0)
    attn = WindowAttention3D(dim=8, window_size=(1, 1, 3), num_heads=2).eval()
    x0, x1 = torch.randn(2, 8)
    with torch.no_grad():
        copies = merged_window_attention(attn, torch.stack([x0, x1, x1])[None], torch.zeros(1, 2, 3, 3),
                                         torch.ones(1, 3))
        merged = merged_window_attention(attn, torch.stack([x0, x1])[None], torch.zeros(1, 2, 2, 2),
                                         torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(merged, copies[:, :2], rtol=0, atol=1e-6)


def _demo_pair(**tome):
    """The demo Swin and a ToMe demo with the Swin's weights (strict load)."""
    torch.manual_seed(0)
    swin = create_model("swin3d_demo", num_classes=5).eval()
    tome_model = create_model("tome_swin3d_demo", num_classes=5, tome=tome).eval()
    tome_model.load_state_dict(swin.state_dict(), strict=True)
    return swin, tome_model


def test_merging_nothing_gives_the_swin_logits_exactly():
    swin, tome_model = _demo_pair(merge_ratio=0.0)
    mini = SwinTransformer3D(**SWIN_MINI, num_classes=5).eval()
    mini_tome = SwinTransformer3D(**SWIN_MINI, num_classes=5, tome=ToMeConfig(merge_ratio=0.0)).eval()
    mini_tome.load_state_dict(mini.state_dict(), strict=True)
    with torch.no_grad():
        for shape in [(1, 3, 8, 56, 56), (1, 3, 6, 72, 72)]:  # the second one shifts and pads
            x = torch.randn(shape)
            assert torch.equal(tome_model(x), swin(x)), shape
        x = torch.randn(1, 3, 4, 64, 64)
        assert torch.equal(mini_tome(x), mini(x))


def test_a_swin_checkpoint_loads_strictly_and_merging_changes_the_logits_a_little():
    swin, tome_model = _demo_pair()  # the variant's ratio
    assert set(create_model("tome_swin3d_tiny", embed_dim=24).state_dict()) == set(
        create_model("swin3d_tiny", embed_dim=24).state_dict())
    x = torch.randn(2, 3, 8, 56, 56)
    with torch.no_grad():
        ref, out = swin(x), tome_model(x)
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    assert (out - ref).abs().max() < ref.abs().max()


def _pad_labels(size, padded, window, shift):
    """(nW, N) bool: which tokens of each (rolled) window are padding."""
    pad = torch.ones(1, *padded, 1)
    pad[:, :size[0], :size[1], :size[2]] = 0
    pad = torch.roll(pad, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    return window_partition(pad, window).squeeze(-1).bool()


def _merges_across_a_boundary(plan, mask, pad, B):
    slot = plan.slot.view(B, *mask.shape[:2])
    same = slot.unsqueeze(-1) == slot.unsqueeze(-2)  # (B, nW, N, N): i and j share a merged token
    crosses = (mask != 0) | (pad.unsqueeze(-1) != pad.unsqueeze(-2))
    return bool((same & crosses).any())


def test_tokens_the_shift_mask_or_the_padding_separate_never_merge():
    size, padded, window, shift = (4, 5, 5), (4, 6, 6), (2, 3, 3), (1, 1, 1)
    mask = shifted_window_mask(padded, window, shift, torch.device("cpu"))  # (nW, N, N)
    pad = _pad_labels(size, padded, window, shift)
    schedule = merge_schedule(size, padded, window, shift, r=12)
    assert 0 < schedule.r <= 12  # capped: a corner window has one-token regions
    B, nW, N = 2, mask.shape[0], mask.shape[1]
    torch.manual_seed(0)
    for metric in (torch.ones(B * nW, N, 4), torch.randn(B * nW, N, 4)):  # all tied, then random
        assert not _merges_across_a_boundary(match_tokens(metric, schedule), mask, pad, B)
    # the check has teeth: without the rule, tied tokens merge across the boundaries
    unmasked = MergeSchedule(tuple(dataclasses.replace(rnd, allowed=None) for rnd in schedule.rounds))
    assert _merges_across_a_boundary(match_tokens(torch.ones(B * nW, N, 4), unmasked), mask, pad, B)


def test_backward_reaches_every_parameter_through_merged_branches():
    model = create_model("tome_swin3d_demo", embed_dim=24, num_classes=3, drop_path_rate=0.0, head_dropout=0.0)
    model(torch.randn(1, 3, 8, 64, 64)).logsumexp(-1).sum().backward()  # shifted and padded windows
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_demo_flops_match_the_stvit_r_demo():
    variant = get_variant("tome_swin3d_demo")
    gflops = count_flops(create_model("tome_swin3d_demo"), torch.zeros(1, *variant.input_size)).total / 1e9
    assert gflops == pytest.approx(variant.gflops, abs=0.001)
    assert gflops == pytest.approx(get_variant("stvit_r_swin3d_demo_perframe").gflops, rel=0.02)
    # the full-size figure is checked by tests/models/test_registry.py
    assert get_variant("tome_swin3d_tiny").gflops == pytest.approx(
        get_variant("stvit_r_swin3d_tiny_perframe").gflops, rel=0.02)


def test_merge_ratio_and_stage_are_checked():
    with pytest.raises(InvalidArgument, match=r"merge_ratio=1\.0: must be a number in \[0, 1\)"):
        ToMeConfig(merge_ratio=1.0)
    with pytest.raises(InvalidArgument, match=r"stage=4: is not a stage index of depths"):
        SwinTransformer3D(**SWIN_MINI, tome=ToMeConfig(stage=4))
    with pytest.raises(InvalidArgument, match="semantic tokens .* or token merging"):
        SwinTransformer3D(**SWIN_MINI, stvit=STViTConfig(), tome=ToMeConfig())


def _cfg(*overrides):
    cfg = get_cfg_defaults()
    cfg.merge_from_list(list(overrides))
    return cfg


def test_config_keys_set_the_merge_ratio():
    arch = model_arch(_cfg("MODEL.ARCH", "tome_swin3d_demo", "TOME.MERGE_RATIO", "0.3"))
    assert arch["kwargs"]["tome"] == {"merge_ratio": 0.3, "stage": 0} and arch["kwargs"]["stvit"] is None
    assert build_model_from_arch(arch).tome == ToMeConfig(merge_ratio=0.3, stage=0)
    assert model_arch(_cfg("MODEL.ARCH", "tome_swin3d_demo"))["kwargs"]["tome"]["merge_ratio"] == 0.605
    assert model_arch(_cfg("MODEL.ARCH", "swin3d_demo"))["kwargs"]["tome"] is None
    with pytest.raises(ConfigError, match=r"TOME\.MERGE_RATIO = 1\.5 .*: must be a number in \[0, 1\)"):
        check_model_config(_cfg("MODEL.ARCH", "tome_swin3d_demo", "TOME.MERGE_RATIO", "1.5"))
    with pytest.raises(ConfigError, match=r"TOME\.MERGE_RATIO set, but MODEL\.ARCH = 'swin3d_tiny' has no token"):
        model_arch(_cfg("MODEL.ARCH", "swin3d_tiny", "TOME.MERGE_RATIO", "0.3"))
