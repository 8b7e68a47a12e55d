"""Released 2D STViT-R ImageNet checkpoints -> our per-frame STViT-R model.

The source state dicts are synthetic: the key names and shapes the official STViT-R code
(changsn/STViT-R, models/swin_transformer.py + models/layers.py) saves, with random values.
"""
import logging

import pytest
import torch
import torch.nn.functional as F

from stvit_video.models import STViTConfig, SwinTransformer3D
from stvit_video.models.stvit_r2d import convert_stvit_r2d, semantic_block_indices
from stvit_video.models.weights import CheckpointLoadError, LoadReport

# Narrow widths: the key mapping depends on depths and heads only through indices.
SWIN_MINI = dict(embed_dim=16, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8))
SWIN_MINI_S = dict(SWIN_MINI, depths=(2, 2, 18, 2))
WINDOW = (8, 7, 7)
IMG = 224  # released models: 224 crops, 56/28/14/7 token maps, window 7


def _released_state_dict(*, embed_dim: int, depths, num_heads, use_global: bool = False,
                         num_classes: int = 1000, meta: bool = False) -> dict:
    """Keys and shapes of the released STViT-R Swin model (random values).

    Stages 0, 1, 3: Swin blocks (odd blocks shifted, with a saved attn_mask, where the map is
    larger than the window). Stage 2 (their ``Deit``): a Swin window block at j % 6 == 0,
    STViT blocks (q / kv / layer scales, no bias table) elsewhere; the optional global grid
    ``semantic_token2``. Conv stem instead of a patch embedding; ImageNet head. ``meta``:
    shapes only (meta tensors), for full-width layouts.
    """
    g = torch.Generator().manual_seed(0)
    sd = {}

    def rand(*shape):
        return torch.empty(*shape, device="meta") if meta else torch.randn(*shape, generator=g)

    def linear(name, out_f, in_f, bias=True):
        sd[f"{name}.weight"] = rand(out_f, in_f)
        if bias:
            sd[f"{name}.bias"] = rand(out_f)

    def norm(name, dim):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = rand(dim), rand(dim)

    C = embed_dim
    for idx, (cin, cout) in zip((0, 2), ((3, C // 2), (C // 2, C))):  # Conv2d_BN, Hardswish, Conv2d_BN, Hardswish
        sd[f"patch_embed.proj.{idx}.c.weight"] = rand(cout, cin, 3, 3)
        for t in ("weight", "bias", "running_mean", "running_var"):
            sd[f"patch_embed.proj.{idx}.bn.{t}"] = rand(cout)
        sd[f"patch_embed.proj.{idx}.bn.num_batches_tracked"] = torch.tensor(1000)
    res = IMG // 4
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        dim = C * 2 ** i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}"
            norm(f"{p}.norm1", dim)
            if i == 2 and j % 6:
                linear(f"{p}.attn.q", dim, dim)
                linear(f"{p}.attn.kv", 2 * dim, dim)
                sd[f"{p}.layer_scale_1"], sd[f"{p}.layer_scale_2"] = rand(dim), rand(dim)
            else:
                sd[f"{p}.attn.relative_position_bias_table"] = rand(13 * 13, heads)
                sd[f"{p}.attn.relative_position_index"] = torch.randint(0, 169, (49, 49), generator=g)
                linear(f"{p}.attn.qkv", 3 * dim, dim)
                if i != 2 and j % 2 and res > 7:
                    sd[f"{p}.attn_mask"] = torch.zeros((res // 7) ** 2, 49, 49)
            linear(f"{p}.attn.proj", dim, dim)
            norm(f"{p}.norm2", dim)
            linear(f"{p}.mlp.fc1", 4 * dim, dim)
            linear(f"{p}.mlp.fc2", dim, 4 * dim)
        if i == 2 and use_global:
            sd[f"layers.{i}.semantic_token2"] = rand(1, (res // 7 * 3) ** 2, dim)
        if i < len(depths) - 1:
            linear(f"layers.{i}.downsample.reduction", 2 * dim, 4 * dim, bias=False)
            norm(f"layers.{i}.downsample.norm", 4 * dim)
            res //= 2
    norm("norm", C * 2 ** (len(depths) - 1))
    linear("head", num_classes, C * 2 ** (len(depths) - 1))
    return sd


def _stvit_r(*, num_units: int = 1, use_global: bool = False, **kw) -> SwinTransformer3D:
    """Per-frame STViT-R model (the only place these tests meet the model constructor)."""
    return SwinTransformer3D(**kw, stvit=STViTConfig(num_units=num_units, use_global=use_global))


@pytest.mark.parametrize("size, params", [
    (dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)), "49.626M"),  # log/small.txt
    (dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)), "87.812M"),  # log/base.txt
])
def test_the_synthetic_layout_has_the_parameter_count_of_the_released_logs(size, params):
    """fvcore's parameter table in the released training logs counts parameters, not buffers."""
    buffers = ("relative_position_index", "attn_mask", "running_mean", "running_var", "num_batches_tracked")
    sd = _released_state_dict(**size, meta=True)
    assert f"{sum(v.numel() for k, v in sd.items() if not k.endswith(buffers)) / 1e6:.3f}M" == params


def _shapes(model) -> dict:
    return {k: v.shape for k, v in model.state_dict().items()}


def _convert_and_load(model, src, **kw):
    report = LoadReport()
    out = convert_stvit_r2d(src, _shapes(model), window_size=model.window_size, report=report, log=None, **kw)
    result = model.load_state_dict(out, strict=False)
    return out, report, result


def test_swin_t_one_unit_loads_with_every_key_accounted_for():
    src = _released_state_dict(**SWIN_MINI)
    model = _stvit_r(**SWIN_MINI, num_classes=5, use_global=True).eval()
    out, report, result = _convert_and_load(model, src)
    assert result.unexpected_keys == []
    assert set(result.missing_keys) == set(report.fresh) == {
        "patch_embed.proj.weight", "patch_embed.proj.bias", "patch_embed.norm.weight", "patch_embed.norm.bias",
        "layers.2.global_centres", "head.fc.weight", "head.fc.bias"}
    # every checkpoint key is either used or named with a reason
    stem = {k for k in src if k.startswith("patch_embed.")}
    derived = {k for k in src if k.endswith(("relative_position_index", "attn_mask"))}
    assert len(stem) == 12 and set(report.unused) == stem | derived | {"head.weight", "head.bias"}
    assert all("conv stem" in report.unused[k] for k in stem)
    assert set(report.loaded) == set(out) == set(model.state_dict()) - set(report.fresh)

    sd = model.state_dict()
    for j in range(1, 6):  # q and kv already split in the release: copied as they are
        for part in ("attn.q.weight", "attn.q.bias", "attn.kv.weight", "attn.kv.bias", "attn.proj.weight",
                     "norm1.bias", "mlp.fc2.weight", "layer_scale_1", "layer_scale_2"):
            torch.testing.assert_close(sd[f"layers.2.blocks.{j}.{part}"], src[f"layers.2.blocks.{j}.{part}"],
                                       rtol=0, atol=0)
    for key in ("layers.2.blocks.0.attn.relative_position_bias_table",
                "layers.0.blocks.1.attn.relative_position_bias_table",
                "layers.3.blocks.1.attn.relative_position_bias_table"):
        table = sd[key].view(15, 169, -1)  # the 2D table once per temporal offset
        for dt in range(15):
            torch.testing.assert_close(table[dt], src[key], rtol=0, atol=0)
    for key in ("layers.2.blocks.0.attn.qkv.weight", "layers.1.blocks.1.mlp.fc1.bias",
                "layers.2.downsample.reduction.weight", "layers.0.downsample.norm.weight", "norm.bias"):
        torch.testing.assert_close(sd[key], src[key], rtol=0, atol=0)
    with torch.no_grad():
        y = model(torch.randn(1, 3, 4, 64, 64))
    assert y.shape == (1, 5) and torch.isfinite(y).all()


def test_swin_s_three_units_with_global_centres():
    src = _released_state_dict(**SWIN_MINI_S, use_global=True)
    model = _stvit_r(**SWIN_MINI_S, num_units=3, use_global=True)
    assert semantic_block_indices(list(src)) == semantic_block_indices(list(model.state_dict())) == {
        "layers.2": [j for j in range(18) if j % 6]}
    out, report, result = _convert_and_load(model, src)
    assert result.unexpected_keys == [] and set(result.missing_keys) == set(report.fresh)
    assert "layers.2.global_centres" not in report.fresh
    sd = model.state_dict()
    # released (1, 36, C) grid in raster order of the 6 x 6 semantic grid, as ours
    torch.testing.assert_close(sd["layers.2.global_centres"], src["layers.2.semantic_token2"].view(1, 36, 64),
                               rtol=0, atol=0)
    for j in (6, 7, 13, 17):  # unit 2's window block and STGM layer 1, unit 3's, last recovery
        for part in ("attn.qkv.weight",) if j % 6 == 0 else ("attn.q.weight", "attn.kv.bias", "layer_scale_2"):
            torch.testing.assert_close(sd[f"layers.2.blocks.{j}.{part}"], src[f"layers.2.blocks.{j}.{part}"],
                                       rtol=0, atol=0)


def test_global_centres_are_resized_to_another_grid():
    src = _released_state_dict(**SWIN_MINI, use_global=True)
    model = _stvit_r(**SWIN_MINI, use_global=True, img_size=256)  # 16 x 16 map: 9 x 9 grid
    _convert_and_load(model, src)
    grid = src["layers.2.semantic_token2"].transpose(1, 2).reshape(1, 64, 6, 6)
    expected = F.interpolate(grid, size=(9, 9), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(model.state_dict()["layers.2.global_centres"], expected)


def test_conv_stem_is_reported_loudly(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("stvit_video"), "propagate", True)  # setup_logging turns it off
    model = _stvit_r(**SWIN_MINI)
    with caplog.at_level(logging.WARNING, logger="stvit_video"):
        convert_stvit_r2d(_released_state_dict(**SWIN_MINI), _shapes(model), window_size=WINDOW)
    messages = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    assert len(messages) == 1  # one warning (the capture may hold it once per handler)
    (message,) = messages
    assert "conv stem" in message and "patch_embed.proj.weight" in message and "full learning rate" in message


def test_a_plain_2d_patch_embedding_is_inflated():
    src = _released_state_dict(**SWIN_MINI)
    for k in [k for k in src if k.startswith("patch_embed.")]:
        del src[k]
    src["patch_embed.proj.weight"], src["patch_embed.proj.bias"] = torch.randn(16, 3, 4, 4), torch.randn(16)
    src["patch_embed.norm.weight"], src["patch_embed.norm.bias"] = torch.randn(16), torch.randn(16)
    model = _stvit_r(**SWIN_MINI, use_global=True)
    _, report, _ = _convert_and_load(model, src)
    assert not any(k.startswith("patch_embed") for k in report.fresh)
    w = model.state_dict()["patch_embed.proj.weight"]
    assert w.shape == (16, 3, 2, 4, 4)
    for t in range(2):
        torch.testing.assert_close(w[:, :, t], src["patch_embed.proj.weight"] / 2)


def test_a_3d_conv_stem_with_the_released_names_is_inflated():
    """Pure on shapes: a model whose stem keeps the released names gets it inflated, BN copied."""
    src = _released_state_dict(**SWIN_MINI)
    model = _stvit_r(**SWIN_MINI, use_global=True)
    shapes = {k: v for k, v in _shapes(model).items() if not k.startswith("patch_embed.")}
    stem = {k: v.shape for k, v in src.items() if k.startswith("patch_embed.")}
    stem["patch_embed.proj.0.c.weight"] = torch.Size((8, 3, 2, 3, 3))  # kt = temporal patch 2
    stem["patch_embed.proj.2.c.weight"] = torch.Size((16, 8, 1, 3, 3))
    report = LoadReport()
    out = convert_stvit_r2d(src, {**shapes, **stem}, window_size=WINDOW, report=report, log=None)
    assert not any(k.startswith("patch_embed") for k in list(report.fresh) + list(report.unused))
    torch.testing.assert_close(out["patch_embed.proj.0.c.weight"][:, :, 1], src["patch_embed.proj.0.c.weight"] / 2)
    torch.testing.assert_close(out["patch_embed.proj.2.c.weight"][:, :, 0], src["patch_embed.proj.2.c.weight"])
    torch.testing.assert_close(out["patch_embed.proj.2.bn.running_var"], src["patch_embed.proj.2.bn.running_var"])


def test_units_at_other_blocks_than_the_model_are_an_error():
    src = _released_state_dict(**SWIN_MINI_S)
    model = _stvit_r(**SWIN_MINI_S, num_units=1, use_global=True)
    with pytest.raises(CheckpointLoadError, match=r"layers\.2: blocks \[1, 2, 3, 4, 5, 7, .*\(3 units\).*"
                       r"layers\.2: blocks \[13, 14, 15, 16, 17\] \(1 unit\).*num_units=3"):
        convert_stvit_r2d(src, _shapes(model), window_size=WINDOW, log=None)


def test_unknown_missing_and_mismatched_keys_are_named():
    model = _stvit_r(**SWIN_MINI, use_global=True)
    src = _released_state_dict(**SWIN_MINI)
    src["layers.2.blocks.3.extra.weight"] = torch.zeros(3)
    del src["layers.1.blocks.0.mlp.fc2.bias"]
    src["layers.2.blocks.4.attn.kv.weight"] = torch.zeros(96, 64)
    with pytest.raises(CheckpointLoadError) as err:
        convert_stvit_r2d(src, _shapes(model), window_size=WINDOW, log=None)
    msg = str(err.value)
    assert "missing from the checkpoint: layers.1.blocks.0.mlp.fc2.bias" in msg
    assert "not in the model: layers.2.blocks.3.extra.weight" in msg
    assert "shape mismatch: layers.2.blocks.4.attn.kv.weight: checkpoint (96, 64) vs model (128, 64)" in msg


def test_released_options_our_model_cannot_represent_are_named_with_the_option():
    model = _stvit_r(**SWIN_MINI)  # use_global=False
    src = _released_state_dict(**SWIN_MINI, use_global=True)
    src["layers.2.blocks.3.attn.relative_position_bias_table"] = torch.zeros(25, 4)
    src["layers.2.blocks.1.conv_pos.proj.0.weight"] = torch.zeros(64, 1, 3, 3)
    with pytest.raises(CheckpointLoadError) as err:
        convert_stvit_r2d(src, _shapes(model), window_size=WINDOW, log=None)
    msg = str(err.value)
    assert "layers.2.semantic_token2 (trained with USE_GLOBAL=True; build the model with use_global=True)" in msg
    assert "layers.2.blocks.3.attn.relative_position_bias_table (trained with RELATIVE_POS=True" in msg
    assert "layers.2.blocks.1.conv_pos.proj.0.weight (trained with USE_CONV_POS=True" in msg


def test_a_window_the_tables_cannot_tile_to_is_named():
    model = _stvit_r(**SWIN_MINI)
    with pytest.raises(CheckpointLoadError, match=r"layers\.0\.blocks\.0\.attn\.relative_position_bias_table: "
                       r"model table has 2535 rows, not \(2\*4-1\) x 169"):
        convert_stvit_r2d(_released_state_dict(**SWIN_MINI), _shapes(model), window_size=(4, 7, 7), log=None)


def test_load_pretrained_reads_the_released_checkpoint_as_stvit_r2d(tmp_path):
    """The whole path a user takes: TRAIN.CHECKPOINT_TYPE stvit_r2d on a saved file."""
    from stvit_video.models.weights import load_pretrained

    src = _released_state_dict(**SWIN_MINI)
    path = tmp_path / "STViT-R-Swin-T.pth"
    torch.save({"model": src, "epoch": 300}, path)
    model = _stvit_r(**SWIN_MINI, num_classes=7)
    report = load_pretrained(model, path, fmt="stvit_r2d", reinit_head=True, log=None)
    assert set(report.fresh) == {"patch_embed.proj.weight", "patch_embed.proj.bias", "patch_embed.norm.weight",
                                 "patch_embed.norm.bias", "head.fc.weight", "head.fc.bias"}
    torch.testing.assert_close(model.state_dict()["layers.2.blocks.1.attn.q.weight"],
                               src["layers.2.blocks.1.attn.q.weight"])
    with pytest.raises(CheckpointLoadError, match="reinit_head=True"):
        load_pretrained(_stvit_r(**SWIN_MINI, num_classes=7), path, fmt="stvit_r2d", log=None)
