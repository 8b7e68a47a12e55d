"""Video Swin specifics: attention kernel, shifted-window mask, window clamping, heads."""
import itertools

import pytest
import torch

from stvit_video.models.swin3d import (
    SwinTransformer3D,
    SwinTransformerBlock3D,
    WindowAttention3D,
    effective_window,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

from tests.helpers.models import SWIN_MINI


def _explicit_attention(attn: WindowAttention3D, x, window, mask):
    """softmax(q k^T * scale + bias + mask) v, written out as in the official Video Swin."""
    BnW, N, C = x.shape
    h = attn.num_heads
    q, k, v = attn.qkv(x).reshape(BnW, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
    scores = (q * attn.scale) @ k.transpose(-2, -1) + attn.relative_position_bias(window).unsqueeze(0)
    if mask is not None:
        nW = mask.shape[0]
        scores = scores.view(BnW // nW, nW, h, N, N) + mask.unsqueeze(1).unsqueeze(0)
        scores = scores.view(BnW, h, N, N)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(BnW, N, C)
    return attn.proj(out)


@pytest.mark.parametrize("shifted", [False, True])
def test_sdpa_equals_explicit_attention(shifted):
    attn = WindowAttention3D(dim=32, window_size=(2, 3, 3), num_heads=4).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(std=1.0)  # a bias that matters
    B, padded, window = 3, (4, 6, 6), (2, 3, 3)
    mask = shifted_window_mask(padded, window, (1, 1, 1), torch.device("cpu")) if shifted else None
    nW = 2 * 2 * 2
    x = torch.randn(B * nW, 18, 32)
    with torch.no_grad():
        fused = attn(x, window, mask)
        attn.fused_attn = False
        unfused = attn(x, window, mask)
        explicit = _explicit_attention(attn, x, window, mask)
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)
    torch.testing.assert_close(unfused, explicit, rtol=0, atol=1e-5)


def test_sdpa_equals_explicit_attention_in_a_whole_model():
    model = SwinTransformer3D(**SWIN_MINI, num_classes=5).eval()
    x = torch.randn(2, 3, 8, 96, 96)
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():
            if isinstance(m, WindowAttention3D):
                m.fused_attn = False
        explicit = model(x)
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)


def test_window_partition_round_trip():
    x = torch.randn(2, 4, 6, 9, 5)
    windows = window_partition(x, (2, 3, 3))
    assert windows.shape == (2 * 2 * 2 * 3, 18, 5)
    torch.testing.assert_close(window_reverse(windows, (2, 3, 3), 2, 4, 6, 9), x)


def test_window_and_shift_are_clamped_to_small_maps():
    assert effective_window((16, 14, 14), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 3, 3))
    assert effective_window((16, 7, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 0, 0))
    assert effective_window((3, 5, 9), (8, 7, 7), (4, 3, 3)) == ((3, 5, 7), (0, 0, 3))


def test_clamped_relative_index_matches_the_official_slice_when_only_time_is_clamped():
    full = relative_position_index((8, 7, 7), (8, 7, 7))
    clamped = relative_position_index((3, 7, 7), (8, 7, 7))
    torch.testing.assert_close(clamped, full[:147, :147])


def test_clamped_relative_index_encodes_true_offsets_when_space_is_clamped():
    index = relative_position_index((1, 2, 2), (1, 3, 3))  # table 1 x 5 x 5, centre (0, 0) offset = 12
    # tokens (0,0),(0,1),(1,0),(1,1): offset (dh, dw) -> (dh + 2) * 5 + (dw + 2)
    expected = torch.tensor([[12, 11, 7, 6], [13, 12, 8, 7], [17, 16, 12, 11], [18, 17, 13, 12]])
    torch.testing.assert_close(index, expected)


def _shifted_group(coord, shift, window):
    """Shifted window of a token of the un-rolled map; wrapped tokens form groups of their own."""
    return tuple((c - s) // w for c, s, w in zip(coord, shift, window))


@pytest.mark.parametrize("size", [(4, 4, 4), (3, 5, 5)])
def test_shifted_attention_never_crosses_a_seam(size):
    """A token's attention output depends exactly on the tokens of its shifted window."""
    window, shift = (2, 2, 2), (1, 1, 1)
    block = SwinTransformerBlock3D(dim=8, num_heads=2, window_size=window, shift_size=shift).eval()
    padded = tuple(-(-n // w) * w for n, w in zip(size, window))
    x = torch.randn(1, *size, 8, requires_grad=True)
    out = block._attention(x)
    coords = list(itertools.product(*[range(n) for n in size]))
    for p in coords:
        (grad,) = torch.autograd.grad(out[(0, *p)].sum(), x, retain_graph=True)
        influence = grad[0].abs().sum(-1)
        for q in coords:
            same = _shifted_group(p, shift, window) == _shifted_group(q, shift, window)
            wraps = any(c < s for c, s in zip(p, shift)) or any(c < s for c, s in zip(q, shift))
            # wrapped tokens share a window only with tokens wrapped along the same axes
            if wraps:
                same = same and all((a < s) == (b < s) for a, b, s in zip(p, q, shift))
            if same:
                assert influence[q] > 0, f"{p} should attend {q}"
            else:
                assert influence[q] < 1e-30, f"{p} attends {q} across a shifted-window seam"
    assert padded  # the map was padded when not a multiple of the window


def test_mask_is_built_from_the_padded_input_not_a_fixed_resolution():
    model = SwinTransformer3D(**SWIN_MINI, num_classes=2).eval()
    with torch.no_grad():
        for frames, crop in [(8, 64), (6, 100), (10, 136)]:
            assert model(torch.randn(1, 3, frames, crop, crop)).shape == (1, 2)
    m1 = shifted_window_mask((8, 14, 14), (8, 7, 7), (4, 3, 3), torch.device("cpu"))
    m2 = shifted_window_mask((8, 21, 14), (8, 7, 7), (4, 3, 3), torch.device("cpu"))
    assert m1.shape == (4, 392, 392) and m2.shape == (6, 392, 392)
    assert set(m1.unique().tolist()) == {0.0, -100.0}


def test_official_parameter_names():
    names = set(SwinTransformer3D(**SWIN_MINI, num_classes=3).state_dict())
    for key in ["patch_embed.proj.weight", "patch_embed.norm.weight",
                "layers.0.blocks.1.attn.relative_position_bias_table", "layers.2.blocks.5.attn.qkv.weight",
                "layers.2.blocks.5.attn.proj.bias", "layers.3.blocks.0.mlp.fc1.weight",
                "layers.3.blocks.0.mlp.fc2.bias", "layers.0.downsample.reduction.weight",
                "layers.2.downsample.norm.bias", "norm.weight", "head.fc.weight"]:
        assert key in names, key
    assert not any("relative_position_index" in n for n in names)  # recomputed, not loaded
    assert "layers.3.downsample.reduction.weight" not in names


def test_patch_embedding_pads_inputs_that_are_not_multiples_of_the_patch():
    model = SwinTransformer3D(**SWIN_MINI, num_classes=2).eval()
    assert model.patch_embed(torch.randn(1, 3, 5, 30, 30)).shape == (1, 16, 3, 8, 8)


def test_parameter_counts_match_video_swin():
    # Video Swin-T 28.2 M parameters with a 400-class head (paper)
    model = SwinTransformer3D(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), num_classes=400)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(28.16e6, rel=2e-3)


def test_a_convolutional_stem_gives_the_patch_embeddings_shape_and_halves_time_after_the_first_layer():
    model = SwinTransformer3D(**SWIN_MINI, num_classes=2, patch_size=(2, 8, 8), stem_channels=(4, 8, 8)).eval()
    convs = [m for m in model.patch_embed.proj if isinstance(m, torch.nn.Conv3d)]
    assert [c.stride for c in convs] == [(1, 2, 2), (2, 2, 2), (1, 2, 2), (1, 1, 1)]
    assert model.patch_embed(torch.randn(1, 3, 5, 60, 60)).shape == (1, 16, 3, 8, 8)  # padded like the linear one
    assert model(torch.randn(2, 3, 4, 64, 64)).shape == (2, 2)


def test_stem_and_patch_size_must_agree_and_init_must_be_known():
    with pytest.raises(ValueError, match=r"patch_size=.*with 2 stem layers .*must be \(T, 4, 4\)"):
        SwinTransformer3D(**SWIN_MINI, patch_size=(2, 8, 8), stem_channels=(4, 8))
    with pytest.raises(ValueError, match=r"patch_size=.*T a power of two <= 4"):
        SwinTransformer3D(**SWIN_MINI, patch_size=(3, 4, 4), stem_channels=(4, 8))
    with pytest.raises(ValueError, match="weight_init=.*must be one of swin, pytorch"):
        SwinTransformer3D(**SWIN_MINI, weight_init="xavier")


def test_weight_init_swin_is_the_official_trunc_normal_and_pytorch_keeps_the_default():
    torch.manual_seed(0)
    # frozen: the weights' statistics are read as plain numbers
    swin = SwinTransformer3D(**SWIN_MINI, num_classes=2).requires_grad_(False)
    pytorch = SwinTransformer3D(**SWIN_MINI, num_classes=2, weight_init="pytorch").requires_grad_(False)
    fc1 = swin.layers[0].blocks[0].mlp.fc1
    assert float(fc1.weight.std()) == pytest.approx(0.02, rel=0.15) and not fc1.bias.any()
    fc1 = pytorch.layers[0].blocks[0].mlp.fc1  # Kaiming-uniform: std = 1 / sqrt(3 * fan_in)
    assert float(fc1.weight.std()) == pytest.approx((3 * fc1.in_features) ** -0.5, rel=0.15) and fc1.bias.any()
    assert float(swin.head.fc.weight.std()) == pytest.approx(0.01, rel=0.2)  # mmaction's I3D head
    pytorch.reset_classifier(5)
    assert pytorch.head.fc.bias.any()  # the new head keeps the model's init
