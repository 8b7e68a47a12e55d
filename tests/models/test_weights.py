"""Checkpoint loading: official Video Swin layout, 2D inflation, STViT from Swin, errors."""
import logging

import pytest
import torch
import torch.nn.functional as F

from stvit_video.models import SwinTransformer3D
from stvit_video.models.swin3d import relative_position_index
from stvit_video.models.weights import CheckpointLoadError, load_pretrained

from tests.helpers.models import SWIN_MINI, stvit_model

X = torch.randn(2, 3, 8, 64, 64)


def _official_video_swin_checkpoint(model: SwinTransformer3D) -> dict:
    """A checkpoint in the official mmaction layout, written from ``model``'s weights."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("head.fc."):
            sd["cls_head.fc_cls." + k[len("head.fc."):]] = v.clone()
        else:
            sd["backbone." + k] = v.clone()
    for k in list(sd):  # the official model saves its (persistent) index buffers too
        if k.endswith("relative_position_bias_table"):
            sd[k.replace("relative_position_bias_table", "relative_position_index")] = \
                relative_position_index((8, 7, 7), (8, 7, 7))
    return {"meta": {"epoch": 30}, "state_dict": sd, "optimizer": {}}


def _swin2d_checkpoint(model: SwinTransformer3D, window2d: int = 7) -> dict:
    """A synthetic official ImageNet Swin checkpoint (2D shapes) for ``model``'s widths."""
    sd = {}
    for k, v in model.state_dict().items():
        if k == "patch_embed.proj.weight":
            v = torch.randn(v.shape[0], v.shape[1], v.shape[3], v.shape[4])
        elif k.endswith("relative_position_bias_table"):
            v = torch.randn((2 * window2d - 1) ** 2, v.shape[1])
        elif k.startswith("head."):
            continue
        else:
            v = torch.randn_like(v) if v.is_floating_point() else v
        sd[k] = v
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, model.num_features), torch.randn(1000)
    sd["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    return {"model": sd}


def test_official_video_swin_checkpoint_loads_strictly_and_reproduces_the_model(tmp_path):
    source = SwinTransformer3D(**SWIN_MINI, num_classes=6).eval()
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save(_official_video_swin_checkpoint(source), path)
    target = SwinTransformer3D(**SWIN_MINI, num_classes=6).eval()
    report = load_pretrained(target, path, fmt="video_swin", log=None)
    assert report.fresh == {}
    assert all(k.endswith("relative_position_index") for k in report.unused)
    with torch.no_grad():
        torch.testing.assert_close(target(X), source(X))


def test_unexpected_and_missing_keys_are_named():
    source = SwinTransformer3D(**SWIN_MINI, num_classes=6)
    ckpt = _official_video_swin_checkpoint(source)
    ckpt["state_dict"]["backbone.extra.weight"] = torch.zeros(1)
    del ckpt["state_dict"]["backbone.layers.1.blocks.0.mlp.fc2.bias"]
    with pytest.raises(CheckpointLoadError, match=r"missing from the checkpoint: layers\.1\.blocks\.0\.mlp\.fc2\.bias"
                       r" \| not in the model: extra\.weight"):
        load_pretrained(SwinTransformer3D(**SWIN_MINI, num_classes=6), ckpt, fmt="video_swin", log=None)


def test_head_of_another_size_needs_reinit_head_and_is_then_reported():
    ckpt = _official_video_swin_checkpoint(SwinTransformer3D(**SWIN_MINI, num_classes=400))
    model = SwinTransformer3D(**SWIN_MINI, num_classes=10)
    with pytest.raises(CheckpointLoadError, match=r"head\.fc\.weight: checkpoint \(400, 128\) vs model \(10, 128\)"
                       r".*reinit_head=True"):
        load_pretrained(model, ckpt, fmt="video_swin", log=None)
    report = load_pretrained(model, ckpt, fmt="video_swin", reinit_head=True, log=None)
    assert set(report.fresh) == {"head.fc.weight", "head.fc.bias"}
    assert report.unused["head.fc.weight"] == "classifier of shape (400, 128)"


def test_missing_and_corrupt_files_are_named(tmp_path):
    model = SwinTransformer3D(**SWIN_MINI, num_classes=2)
    with pytest.raises(CheckpointLoadError, match=r"checkpoint file .*nope\.pth does not exist"):
        load_pretrained(model, tmp_path / "nope.pth")
    bad = tmp_path / "truncated.pth"
    torch.save(model.state_dict(), bad)
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(CheckpointLoadError, match=r"cannot read checkpoint .*truncated\.pth"):
        load_pretrained(model, bad)


def test_native_checkpoint_round_trip_with_ddp_prefix():
    source = stvit_model(SWIN_MINI, num_classes=3, use_global=True).eval()
    ckpt = {"model": {"module." + k: v for k, v in source.state_dict().items()}, "epoch": 3}
    target = stvit_model(SWIN_MINI, num_classes=3, use_global=True).eval()
    report = load_pretrained(target, ckpt, log=None)
    assert report.fresh == {} and report.unused == {}
    with torch.no_grad():
        torch.testing.assert_close(target(X), source(X))


def test_inflation_from_a_2d_swin_checkpoint():
    model = SwinTransformer3D(**SWIN_MINI, num_classes=5).eval()
    ckpt = _swin2d_checkpoint(model)
    report = load_pretrained(model, ckpt, fmt="swin2d", reinit_head=True, log=None)
    assert set(report.fresh) == {"head.fc.weight", "head.fc.bias"}
    assert {"head.weight", "head.bias", "layers.0.blocks.1.attn_mask"} <= set(report.unused)
    sd2d = ckpt["model"]
    # patch kernel repeated over time and divided by the temporal patch size
    w3d = model.patch_embed.proj.weight.detach()
    torch.testing.assert_close(w3d, sd2d["patch_embed.proj.weight"].unsqueeze(2).repeat(1, 1, 2, 1, 1) / 2)
    # a static clip embeds like the 2D image
    frame = torch.randn(1, 3, 32, 32)
    clip = frame.unsqueeze(2).repeat(1, 1, 2, 1, 1)
    emb3d = F.conv3d(clip, w3d, model.patch_embed.proj.bias, stride=(2, 4, 4))[:, :, 0]
    emb2d = F.conv2d(frame, sd2d["patch_embed.proj.weight"], sd2d["patch_embed.proj.bias"], stride=4)
    torch.testing.assert_close(emb3d, emb2d, rtol=1e-4, atol=1e-5)
    # bias table tiled over the 15 temporal offsets
    table = model.layers[1].blocks[0].attn.relative_position_bias_table.detach()
    assert table.shape == (15 * 169, 2)
    for dt in range(15):
        torch.testing.assert_close(table[dt * 169:(dt + 1) * 169], sd2d["layers.1.blocks.0.attn.relative_position_bias_table"])
    torch.testing.assert_close(model.layers[3].blocks[1].mlp.fc2.weight, sd2d["layers.3.blocks.1.mlp.fc2.weight"])


def test_inflation_resizes_bias_tables_of_another_window():
    model = SwinTransformer3D(**SWIN_MINI, num_classes=5)
    ckpt = _swin2d_checkpoint(model, window2d=12)  # a 384-pixel ImageNet model: 23 x 23 tables
    load_pretrained(model, ckpt, fmt="swin2d", reinit_head=True, log=None)
    table = model.layers[0].blocks[0].attn.relative_position_bias_table.detach()
    src = ckpt["model"]["layers.0.blocks.0.attn.relative_position_bias_table"]
    expected = F.interpolate(src.T.reshape(1, 1, 23, 23), size=(13, 13), mode="bicubic",
                             align_corners=False).reshape(1, 169).T
    torch.testing.assert_close(table[:169], expected)


def test_stvit_from_a_swin_checkpoint_maps_replaced_blocks_and_names_the_rest(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("stvit_video"), "propagate", True)  # setup_logging turns it off
    swin = SwinTransformer3D(**SWIN_MINI, num_classes=4)
    ckpt = _official_video_swin_checkpoint(swin)
    stvit = stvit_model(SWIN_MINI, num_classes=4, use_global=True)
    with caplog.at_level(logging.INFO, logger="stvit_video"):
        report = load_pretrained(stvit, ckpt, fmt="video_swin")
    swin_sd, st_sd = swin.state_dict(), stvit.state_dict()
    # shared blocks, unit block 0 and the other stages load exactly
    for k in ("layers.2.blocks.0.attn.qkv.weight", "layers.2.blocks.0.attn.relative_position_bias_table",
              "layers.1.blocks.1.mlp.fc1.weight", "layers.3.blocks.0.attn.proj.weight", "head.fc.weight"):
        torch.testing.assert_close(st_sd[k], swin_sd[k])
    # replaced blocks: q and kv split from qkv, proj / norms / MLP carried over
    for j in range(1, 6):
        qkv_w, qkv_b = swin_sd[f"layers.2.blocks.{j}.attn.qkv.weight"], swin_sd[f"layers.2.blocks.{j}.attn.qkv.bias"]
        torch.testing.assert_close(st_sd[f"layers.2.blocks.{j}.attn.q.weight"], qkv_w[:64])
        torch.testing.assert_close(st_sd[f"layers.2.blocks.{j}.attn.kv.weight"], qkv_w[64:])
        torch.testing.assert_close(st_sd[f"layers.2.blocks.{j}.attn.q.bias"], qkv_b[:64])
        torch.testing.assert_close(st_sd[f"layers.2.blocks.{j}.attn.kv.bias"], qkv_b[64:])
        for part in ("attn.proj.weight", "norm1.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc2.bias"):
            torch.testing.assert_close(st_sd[f"layers.2.blocks.{j}.{part}"], swin_sd[f"layers.2.blocks.{j}.{part}"])
    expected_fresh = {f"layers.2.blocks.{j}.layer_scale_{i}" for j in range(1, 6) for i in (1, 2)}
    assert set(report.fresh) == expected_fresh | {"layers.2.global_centres"}
    assert {f"layers.2.blocks.{j}.attn.relative_position_bias_table" for j in range(1, 6)} <= set(report.unused)
    logged = caplog.text
    for name in expected_fresh | {"layers.2.global_centres"}:
        assert f"freshly initialised: {name}" in logged


def test_native_files_are_read_with_the_format_version_check(tmp_path):
    """Our checkpoints go through the one reader: a newer format is refused by name, not misread."""
    from stvit_video.models import create_model
    from stvit_video.models.weights import CheckpointLoadError, load_pretrained

    model = create_model("swin3d_tiny", num_classes=3, embed_dim=16, num_heads=(1, 2, 4, 8))
    torch.save({"format_version": 2, "model": model.state_dict()}, tmp_path / "future.pyth")
    with pytest.raises(CheckpointLoadError, match="format_version 2; this stvit_video reads version 1"):
        load_pretrained(model, tmp_path / "future.pyth")
    torch.save(model.state_dict(), tmp_path / "bare.pth")  # a bare state dict is still "native"
    assert len(load_pretrained(model, tmp_path / "bare.pth", log=None).loaded) == len(model.state_dict()) - len(
        [k for k in model.state_dict() if "relative_position_index" in k])
