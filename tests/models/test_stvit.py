"""STViT units: geometry, equivalences at init, per-frame vs spatiotemporal, plain STViT."""
import pytest
import torch
import torch.nn.functional as F

from stvit_video.models import create_model, get_variant
from stvit_video.models.stvit import (
    STViTConfig,
    STViTStage3D,
    SemanticBlock,
    gather_key_windows,
    semantic_geometry,
)
from stvit_video.models.swin3d import StageSpec, SwinStage3D, window_partition
from stvit_video.utils.errors import InvalidArgument

from tests.helpers.models import SWIN_MINI, SWIN_S, SWIN_T, stvit_model


def _spec(depth: int = 6) -> StageSpec:
    return StageSpec(dim=16, depth=depth, num_heads=2, window_size=(8, 7, 7), mlp_ratio=4.0, qkv_bias=True,
                     drop=0.0, attn_drop=0.0, drop_path=(0.0,) * depth, downsample=False)


def _stage(depth: int = 6, **config):
    return STViTStage3D(_spec(depth), STViTConfig(**config), global_grid=(6, 6))


# --- geometry ---------------------------------------------------------------------------------
def test_geometry_reproduces_the_released_14x14_layout():
    geo = semantic_geometry((16, 14, 14), (8, 7, 7), 3, 1)
    assert geo.cells == (16, 2, 2) and geo.grid == (16, 6, 6) and geo.cell == (1, 3, 3)
    # the 7x7 window enlarged by 3 toward the map centre: unfold kernel 10, stride 4
    assert geo.key_h.tolist() == [list(range(0, 10)), list(range(4, 14))]
    assert geo.key_w.tolist() == geo.key_h.tolist()
    assert geo.num_keys == 100  # + 9 pooled tokens = the released 109 keys per window


@pytest.mark.parametrize("side", [14, 28])
def test_adaptive_pooling_equals_per_window_pooling_with_overlapping_bins(side):
    x = torch.randn(2, 5, side, side)
    geo = semantic_geometry((1, side, side), (8, 7, 7), 3, 1)
    whole = F.adaptive_max_pool2d(x, geo.grid[1:])
    n = side // 7
    per_window = torch.empty_like(whole)
    for i in range(n):
        for j in range(n):
            window = x[:, :, 7 * i:7 * i + 7, 7 * j:7 * j + 7]
            # the released bins [0:3], [2:5], [4:7]
            bins = [window[:, :, a:a + 3, b:b + 3].amax((-2, -1)) for a in (0, 2, 4) for b in (0, 2, 4)]
            per_window[:, :, 3 * i:3 * i + 3, 3 * j:3 * j + 3] = torch.stack(bins, -1).view(2, 5, 3, 3)
    torch.testing.assert_close(whole, per_window)


@pytest.mark.parametrize("size, cells, key", [
    ((4, 16, 16), (4, 3, 3), 10),   # not a multiple of the window: 3 cells, no padding needed
    ((4, 21, 21), (4, 3, 3), 10),
    ((4, 5, 5), (4, 1, 1), 5),      # smaller than the window: clamped
    ((4, 8, 8), (4, 2, 2), 8),
])
def test_key_windows_contain_their_cell_and_stay_inside_the_map(size, cells, key):
    geo = semantic_geometry(size, (8, 7, 7), 3, 1)
    assert geo.cells == cells and geo.key_h.shape == (cells[1], key)
    H, n = size[1], cells[1]
    for i, row in enumerate(geo.key_h.tolist() + geo.key_t.tolist()):
        if i >= n:  # temporal windows: one slice per cell in perframe mode
            assert row == [i - n]
            continue
        lo, hi = (i * H) // n, -((-(i + 1) * H) // n)
        assert row == list(range(row[0], row[0] + key)) and 0 <= row[0] and row[-1] < H
        assert row[0] <= lo and hi <= row[-1] + 1, f"cell {i} [{lo},{hi}) outside its keys {row}"


def test_spatiotemporal_cells_pool_slices_and_key_their_own_slices():
    geo = semantic_geometry((5, 14, 14), (8, 7, 7), 2, 2)
    assert geo.grid == (3, 4, 4) and geo.cells == (3, 2, 2)
    # odd D: the middle region [1, 4) is 3 slices wide, so every key window is
    assert geo.key_t.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    geo = semantic_geometry((6, 14, 14), (8, 7, 7), 2, 2)
    assert geo.key_t.tolist() == [[0, 1], [2, 3], [4, 5]]


def test_gathered_keys_are_the_tokens_of_the_window():
    x = torch.arange(1 * 2 * 14 * 14, dtype=torch.float).view(1, 2, 14, 14, 1)
    geo = semantic_geometry((2, 14, 14), (8, 7, 7), 3, 1)
    keys = gather_key_windows(x, geo)  # cells in raster order (t, h, w)
    assert keys.shape == (2 * 2 * 2, 100, 1)
    torch.testing.assert_close(keys[3, :, 0], x[0, 0, 4:14, 4:14, 0].reshape(-1))  # t=0, h=1, w=1
    torch.testing.assert_close(keys[5, :, 0], x[0, 1, 0:10, 4:14, 0].reshape(-1))  # t=1, h=0, w=1


# --- equivalences at initialisation -----------------------------------------------------------
def test_with_zero_layer_scales_a_stvit_r_unit_is_its_window_block():
    stvit = _stage(layer_scale_init=0.0).eval()
    swin = SwinStage3D(_spec()).eval()
    swin.blocks[0].load_state_dict(stvit.blocks[0].state_dict())
    x = torch.randn(2, 4, 14, 14, 16)
    with torch.no_grad():
        torch.testing.assert_close(stvit(x), swin.blocks[0](x))


def test_semantic_block_without_residual_outputs_only_its_branches():
    blk = SemanticBlock(dim=8, num_heads=2, layer_scale_init=0.0, residual=False).eval()
    x = torch.randn(3, 9, 8)
    with torch.no_grad():
        assert blk(x).abs().max() == 0  # g1 = g2 = 0: no residual, so nothing passes


# --- per-frame vs spatiotemporal -------------------------------------------------------------
def _semantic_tokens(stage, x):
    s = stage._stgm1(stage.blocks[1], x)
    return s, stage._stgm2(stage.blocks[2], s, x, add_global=False)


def test_perframe_semantic_tokens_of_a_slice_depend_only_on_that_slice():
    stage = _stage().eval()
    x = torch.randn(1, 4, 14, 14, 16)
    y = x.clone()
    y[:, 2] += torch.randn_like(y[:, 2])
    with torch.no_grad():
        (s1x, s2x), (s1y, s2y) = _semantic_tokens(stage, x), _semantic_tokens(stage, y)
    assert s2x.shape == (1, 4, 6, 6, 16)
    changed = (s2x - s2y).abs().amax((0, 2, 3, 4)) > 0
    assert changed.tolist() == [False, False, True, False]


def test_spatiotemporal_tokens_pool_pairs_of_slices_and_mix_the_clip():
    stage = _stage(mode="spatiotemporal", temporal_pool=2).eval()
    x = torch.randn(1, 4, 14, 14, 16)
    y = x.clone()
    y[:, 2] += torch.randn_like(y[:, 2])
    with torch.no_grad():
        (s1x, s2x), (s1y, s2y) = _semantic_tokens(stage, x), _semantic_tokens(stage, y)
    assert s1x.shape == (1, 2, 6, 6, 16)
    # layer 1 keys come from the cell's own slices; layer 2 attends over the whole clip
    assert ((s1x - s1y).abs().amax((0, 2, 3, 4)) > 0).tolist() == [False, True]
    assert ((s2x - s2y).abs().amax((0, 2, 3, 4)) > 0).tolist() == [True, True]


def test_perframe_rejects_temporal_pooling():
    with pytest.raises(InvalidArgument, match="temporal_pool=2: must be 1 in mode 'perframe'"):
        _stage(temporal_pool=2)


def test_too_many_units_for_the_stage_is_an_error():
    with pytest.raises(InvalidArgument, match=r"2 units of 6 blocks do not fit a stage of depth 6 \(at most 1\)"):
        _stage(num_units=2)


# --- model-level structure ---------------------------------------------------------------------
def test_units_replace_the_last_blocks_of_the_stage_one_for_one():
    model = stvit_model(SWIN_S, num_units=2)
    stage = model.layers[2]
    assert stage.roles == ["swin"] * 6 + ["unit_swin", "stgm1", "stgm2", "local", "global", "recovery"] * 2
    assert stage.blocks[6].shift_size == (0, 0, 0) and stage.blocks[5].shift_size == (4, 3, 3)
    plain = stvit_model(SWIN_T, recovery=False).layers[2]
    assert plain.roles == ["unit_swin", "stgm1", "stgm2", "local", "global", "local"]


def test_plain_stvit_runs_later_stages_on_the_semantic_grid():
    model = stvit_model(SWIN_MINI, recovery=False, num_classes=3).eval()
    x = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        feats = model.forward_features(x)
    # stage 3: 4 x 14 x 14 image tokens -> 4 x 6 x 6 semantic grid -> merged 4 x 3 x 3 in stage 4
    assert feats.shape == (1, 128, 4, 3, 3)
    r = stvit_model(SWIN_MINI, recovery=True, num_classes=3).eval()
    with torch.no_grad():
        assert r.forward_features(x).shape == (1, 128, 4, 7, 7)


def test_global_centres_are_sized_for_the_training_crop_and_resized_for_others():
    model = stvit_model(SWIN_T, use_global=True, num_classes=3)
    stage = model.layers[2]
    assert stage.global_centres.shape == (1, 36, 384)  # 6 x 6 grid at 224, as released
    assert stage._global_centres((9, 9)).shape == (1, 81, 384)
    torch.testing.assert_close(stage._global_centres((6, 6)), stage.global_centres)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 256, 256)).shape == (1, 3)  # 16 x 16 map -> 9 x 9 grid


def test_semantic_parameter_names_cover_exactly_the_new_blocks():
    model = stvit_model(SWIN_T, use_global=True)
    names = model.semantic_parameter_names()
    assert "layers.2.global_centres" in names
    assert "layers.2.blocks.1.attn.q.weight" in names and "layers.2.blocks.5.layer_scale_2" in names
    assert not any(n.startswith("layers.2.blocks.0.") for n in names)
    assert not any(n.startswith(("layers.1.", "layers.3.", "head.")) for n in names)
    expected = {n for n, _ in model.named_parameters()
                if n.startswith(tuple(f"layers.2.blocks.{j}." for j in range(1, 6)))} | {"layers.2.global_centres"}
    assert names == expected


def test_windows_of_the_semantic_grid_are_the_cells():
    s = torch.arange(6 * 6, dtype=torch.float).view(1, 1, 6, 6, 1)
    cells = window_partition(s, (1, 3, 3))
    assert cells[1, :, 0].tolist() == [3, 4, 5, 9, 10, 11, 15, 16, 17]


def test_global_centres_enter_the_first_unit_only():
    stage = _stage(depth=12, num_units=2, use_global=True).eval()
    calls = []
    original = stage._stgm2
    stage._stgm2 = lambda blk, s, x, add_global: calls.append(add_global) or original(blk, s, x, add_global)
    with torch.no_grad():
        stage(torch.randn(1, 2, 14, 14, 16))
    assert calls == [True, False]
    # and G changes the queries: S differs from the same stage without G
    s = stage._stgm1(stage.blocks[1], torch.randn(1, 2, 14, 14, 16))
    x = torch.randn(1, 2, 14, 14, 16)
    with torch.no_grad():
        with_g = original(stage.blocks[2], s, x, True)
        without = original(stage.blocks[2], s, x, False)
    assert (with_g - without).abs().max() > 1e-3


def test_a_model_run_under_inference_mode_still_trains_on_the_same_shape():
    """Masks and key indices are cached per shape: the ones built while testing under
    inference_mode must not break training at that shape later in the same process."""
    model = stvit_model(SWIN_MINI, num_classes=3, mode="spatiotemporal", temporal_pool=2)
    x = torch.randn(1, 3, 6, 72, 72)  # a shape no other test caches first
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert model.layers[2].blocks[1].attn.q.weight.grad is not None


def test_a_plain_stvit_starts_input_dependent_only_with_layer_scales_not_muting_stgm():
    """Plain STViT sees the input only through STGM layer 1, which outputs layer_scale x attention:
    at the paper's 1e-5 the logits barely depend on the clip, which left the demo at chance."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 56, 56)
    spread = {}
    for scale in (1e-5, 1.0):
        model = create_model("stvit_swin3d_demo_perframe", num_classes=8, stvit={"layer_scale_init": scale}).eval()
        with torch.no_grad():
            spread[scale] = float(model(x).std(0).mean())
    assert spread[1.0] > 100 * spread[1e-5]
    assert get_variant("stvit_swin3d_demo_perframe").stvit.layer_scale_init == 1.0  # the demo variant's default
