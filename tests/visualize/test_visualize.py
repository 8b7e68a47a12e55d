"""Pictures of what the semantic tokens see (stvit_video.engine.visualize, tools/visualize.py): valid
images for every model family at demo size, attention maps that are distributions, logits unchanged
by the capture, Grad-CAM on the last-stage layout, errors that name the culprit, the report's
TEST.VISUALIZE pictures."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from stvit_video.bench.videos import VideoSpec, write_video
from stvit_video.engine.checkpoint import build_checkpoint_state, save_checkpoint
from stvit_video.engine.visualize import most_confused_videos, semantic_attention, visualize_videos
from stvit_video.models import create_model, get_variant
from stvit_video.report.token_maps import CELL
from stvit_video.visualize_cli import main as visualize_main

CLASSES = ["circles", "squares", "triangles"]
FRAMES = 8  # the stored transform's clip length
# family -> (registered demo variant, STViTConfig fields changed on top of it)
FAMILIES = {
    "swin": ("swin3d_demo", None),
    "stvit_r_perframe": ("stvit_r_swin3d_demo_perframe", None),
    "stvit_r_spatiotemporal": ("stvit_r_swin3d_demo_perframe", {"mode": "spatiotemporal", "temporal_pool": 2}),
    "stvit_perframe": ("stvit_swin3d_demo_perframe", None),
    "stvit_spatiotemporal": ("stvit_swin3d_demo_perframe", {"mode": "spatiotemporal", "temporal_pool": 2}),
}
TRANSFORM = {"mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225], "short_side": 56, "crop": 56,
             "num_frames": FRAMES, "sampling_rate": 2, "target_fps": 0.0, "num_clips": 1, "num_crops": 1,
             "out_of_bound": "loop"}


def _model(family: str) -> torch.nn.Module:
    name, stvit = FAMILIES[family]
    torch.manual_seed(0)
    return create_model(name, num_classes=len(CLASSES), **({"stvit": stvit} if stvit else {})).eval()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One short video and a random-weight demo-size checkpoint of every family."""
    root = tmp_path_factory.mktemp("visualize")
    video = write_video(root / "clip.mp4", VideoSpec(width=64, height=48, num_frames=20))
    checkpoints = {}
    for family, (name, _) in FAMILIES.items():
        model = _model(family)
        kwargs = dict(get_variant(name).kwargs, num_classes=len(CLASSES))
        kwargs["stvit"] = model.stvit.as_dict() if model.stvit is not None else None
        state = build_checkpoint_state(model=model, optimizer=None, scaler=None, epoch=1, iter_in_epoch=0,
                                       global_step=1, cfg_text="", class_names=CLASSES, test_transform=TRANSFORM,
                                       arch={"name": name, "kwargs": kwargs}, best_metric=None)
        checkpoints[family] = save_checkpoint(root / f"{family}.pyth", state)
    return root, video, checkpoints


@pytest.fixture(scope="module")
def drawn(demo):
    """family -> (what visualize_videos wrote, its JSON file) for the demo video; one family as MP4."""
    root, video, checkpoints = demo
    out = {}
    for family, path in checkpoints.items():
        fmt = "mp4" if family == "stvit_r_spatiotemporal" else "gif"
        json_path = root / family / "maps.json"
        (result,) = visualize_videos(path, [video], root / family, json_path=json_path, fmt=fmt, device="cpu")
        out[family] = result, json_path
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_gets_valid_pictures_and_json(drawn, family):
    result, json_path = drawn[family]
    fmt = result.animation.suffix[1:]
    maps, semantic = result.maps, family != "swin"
    # Grad-CAM lies on the last-stage map (the demo's one stage): 8 x 56 x 56 -> 4 x 7 x 7 image tokens
    # (T/2 x H/8 x W/8); plain STViT ends on the semantic grid: 3 x 3 per slice, 2 slices spatiotemporal
    assert maps.gradcam.shape == {"stvit_perframe": (4, 3, 3), "stvit_spatiotemporal": (2, 3, 3)}.get(family, (4, 7, 7))
    assert maps.gradcam_layout == ("semantic grid" if family in ("stvit_perframe", "stvit_spatiotemporal") else
                                   "image tokens")
    assert (maps.gradcam >= 0).all() and maps.frames.shape == (FRAMES, 56, 56, 3)
    # the grid: 4 temporal slices of image tokens -> 4 rows; frame, Grad-CAM (+ assignment + 4 tokens)
    png = Image.open(result.png)
    png.load()
    columns = 2 + (1 + 4 if semantic else 0)
    assert png.format == "PNG" and png.size == (78 + columns * (CELL + 2), 40 + 4 * (CELL + 2))
    panels = 3 if semantic else 2
    if fmt == "gif":
        gif = Image.open(result.animation)
        assert gif.format == "GIF" and gif.n_frames == FRAMES and gif.size == (panels * CELL, CELL + 18)
    else:
        import av

        with av.open(str(result.animation)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) == FRAMES and decoded[0].shape == (CELL + 18, panels * CELL, 3)
    document = json.loads(json_path.read_text())
    entry = document["videos"][0]
    assert entry["gradcam"]["shape"] == list(maps.gradcam.shape)
    assert np.array(entry["gradcam"]["values"]).shape == maps.gradcam.shape
    if not semantic:
        assert entry["semantic_tokens"] is None and "no semantic tokens: Grad-CAM only" in entry["notes"][0]
        return
    (unit,) = entry["semantic_tokens"]["units"]
    grid = (2, 3, 3) if family.endswith("spatiotemporal") else (4, 3, 3)
    assert unit["grid"] == list(grid) and unit["image_tokens"] == [4, 7, 7] and len(unit["tokens"]) == np.prod(grid)
    token = unit["tokens"][-1]
    assert np.array(token["values"]).shape == tuple(token["shape"])
    assert token["shape"] == ([4, 7, 7] if family.endswith("spatiotemporal") else [1, 7, 7])


@pytest.mark.parametrize("family", ["stvit_r_perframe", "stvit_r_spatiotemporal", "stvit_spatiotemporal"])
def test_token_maps_are_distributions_over_the_image_tokens_they_see(drawn, family):
    (sem,) = drawn[family][0].maps.semantic
    K, D = sem.attention.shape[:2]
    assert K == int(np.prod(sem.grid)) and (sem.attention >= 0).all()
    # each token's weights over the image tokens it sees, plus its share on the semantic keys, sum to 1
    np.testing.assert_allclose(sem.attention.reshape(K, -1).sum(1) + sem.semantic_share, 1.0, atol=1e-5)
    assert ((sem.semantic_share > 0) & (sem.semantic_share < 1)).all()
    for k in range(K):
        start, stop = sem.visible[k]
        outside = np.delete(sem.attention[k], np.arange(start, stop), axis=0)
        assert not outside.any()  # nothing outside the slices the token attends
    if sem.mode == "perframe":
        assert (sem.visible[:, 1] - sem.visible[:, 0] == 1).all()
        owner_slice = sem.assignment // sem.tokens_per_slice  # every image token belongs to a token of its slice
        assert (owner_slice == np.arange(D)[:, None, None]).all()
    else:
        assert (sem.visible == [0, D]).all()
    assert sem.assignment.min() >= 0 and sem.assignment.max() < K


@pytest.mark.parametrize("family", ["stvit_r_perframe", "stvit_spatiotemporal"])
def test_capturing_changes_no_logits_and_leaves_nothing_behind(family):
    model = _model(family)
    x = torch.randn(1, 3, FRAMES, 56, 56)
    stage = model.layers[0]
    layer2 = stage.blocks[stage.roles.index("stgm2")]
    seen = {}
    hook = layer2.register_forward_hook(lambda _m, args, _out: seen.update(x=args[0], kv=args[1]))
    with torch.no_grad():
        plain = model(x)
        with semantic_attention(model) as captures:
            captured = model(x)
            assert len(captures) == 1 and captures[0].attn is layer2.attn
            kept = layer2.attn.attention
    hook.remove()
    assert torch.equal(plain, captured)
    # the kept weights are softmax(q k^T / sqrt(d)) of the block's own queries and keys, mean over heads
    attn, (B, Nq, C) = layer2.attn, seen["x"].shape
    q = attn.q(layer2.norm1(seen["x"])).view(B, Nq, attn.num_heads, -1).transpose(1, 2)
    k = seen["kv"][..., :C].reshape(B, -1, attn.num_heads, attn.head_dim).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-2, -1) / attn.head_dim ** 0.5, -1).mean(1)
    torch.testing.assert_close(kept, expected, rtol=1e-4, atol=1e-6)
    attn = captures[0].attn
    assert attn.store_attention is False and attn.attention is None and not attn._forward_pre_hooks
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_errors_name_the_culprit(demo, tmp_path, capsys):
    _, video, checkpoints = demo
    out = str(tmp_path / "out")
    assert visualize_main(["--checkpoint", str(checkpoints["swin"]), str(tmp_path / "absent.mp4"), "--out", out]) == 2
    assert "absent.mp4" in capsys.readouterr().err
    assert visualize_main(["--checkpoint", str(checkpoints["swin"]), str(video), "--out", out, "--tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert "swin3d_demo, which has no semantic tokens" in err and err.startswith("error: visualize:")
    assert visualize_main(["--checkpoint", str(checkpoints["stvit_perframe"]), str(video), "--out", out,
                           "--class", "hexagons"]) == 2
    assert "class 'hexagons' is not a class of" in capsys.readouterr().err
    assert visualize_main(["--checkpoint", str(checkpoints["stvit_perframe"]), str(video), "--out", out,
                           "--class", "7"]) == 2
    assert "class id 7" in capsys.readouterr().err
    (tmp_path / "bad.mp4").write_bytes(b"not a video")  # undecodable: named on stdout, exit 1
    assert visualize_main(["--checkpoint", str(checkpoints["swin"]), str(tmp_path / "bad.mp4"), "--out", out]) == 1
    assert "bad.mp4: could not be decoded:" in capsys.readouterr().out
    # a class by name: Grad-CAM explains it, and the console names the files
    assert visualize_main(["--checkpoint", str(checkpoints["swin"]), str(video), "--out", out,
                           "--class", "Triangles", "--device", "cpu"]) == 0
    assert "clip.png" in capsys.readouterr().out and (tmp_path / "out" / "clip.gif").is_file()


def test_most_confused_is_the_lowest_true_class_score():
    p = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.4, 0.3, 0.3]])
    logits = np.log(p)[:, None, :].astype(np.float32)  # one view each
    valid = np.ones((4, 1), bool)
    valid_none = valid.copy()
    valid_none[0] = False  # no decoded view: never chosen
    chosen = most_confused_videos(logits, valid_none, [0, 0, 2, 1], "sum", 2)
    assert [row for row, _ in chosen] == [1, 3] and chosen[0][1] == pytest.approx(0.2)


def test_the_report_shows_the_most_confused_videos(demo, tmp_path):
    from stvit_video.cli import main

    _, video, checkpoints = demo
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    for i in range(3):
        (data / "videos" / f"v{i}.mp4").write_bytes(video.read_bytes())
    (data / "test.csv").write_text("".join(f"videos/v{i}.mp4 {i}\n" for i in range(3)))
    (data / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    out = tmp_path / "run"
    assert main(["--cfg", "kinetics400", "TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH",
                 str(checkpoints["stvit_r_perframe"]), "DATA.PATH_TO_DATA_DIR", str(data), "OUTPUT_DIR", str(out),
                 "DATA_LOADER.NUM_WORKERS", "0", "NUM_GPUS", "0", "TEST.NUM_ENSEMBLE_VIEWS", "1",
                 "TEST.NUM_SPATIAL_CROPS", "1", "TEST.BATCH_SIZE", "3", "TEST.SPLIT", "test",
                 "TEST.VISUALIZE", "2"]) == 0
    report = json.loads((out / "eval" / "report.json").read_text())
    shown = report["meta"]["visualized"]["videos"]
    assert len(shown) == 2 and shown[0]["true_score"] <= shown[1]["true_score"]
    for entry in shown:
        assert Image.open(out / "eval" / entry["png"]).format == "PNG"
        assert Image.open(out / "eval" / entry["animation"]).n_frames == FRAMES
    page = (out / "eval" / "report.html").read_text()
    assert "Most confused videos (2)" in page and page.count('<img alt="maps of') == 2


def test_the_formats_offered_without_imports_are_the_drawers():
    from stvit_video import visualize_cli
    from stvit_video.report.token_maps import ANIMATION_FORMATS

    assert tuple(visualize_cli.FORMATS) == tuple(ANIMATION_FORMATS)
