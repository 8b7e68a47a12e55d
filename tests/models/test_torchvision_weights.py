"""torchvision's Kinetics-400 Video Swin (``swin3d_t/s/b``) state dicts load into our models."""
import pytest
import torch
from torchvision.models.video import swin3d_t
from torchvision.models.video.swin_transformer import SwinTransformer3d

from stvit_video.models import SwinTransformer3D, create_model
from stvit_video.models.weights import CheckpointLoadError, load_pretrained

from tests.helpers.models import SWIN_MINI, stvit_model


# Small windows, so small inputs pad and shift without clamping a window spatially: there
# torchvision (like the official code) slices the full bias index, we index the clamped window
# (see stvit_video/models/swin3d.py); at 32 x 224 no window is clamped.
WINDOW = (4, 2, 2)


def _torchvision_mini(depths=SWIN_MINI["depths"], num_classes: int = 5, window=(8, 7, 7)) -> SwinTransformer3d:
    """torchvision's class at the width of SWIN_MINI, random weights."""
    torch.manual_seed(0)
    return SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=SWIN_MINI["embed_dim"], depths=list(depths),
                             num_heads=list(SWIN_MINI["num_heads"]), window_size=list(window),
                             num_classes=num_classes).eval()


def test_swin3d_t_at_32x224_gives_torchvisions_logits():
    """The one full-size check: torchvision's own Swin3D-T and ours after conversion."""
    torch.manual_seed(0)
    theirs = swin3d_t().eval()
    with torch.no_grad():  # trunc-normal 0.02 weights give tiny logits: make them larger to compare
        theirs.head.weight.mul_(50)
    ours = create_model("swin3d_tiny", num_classes=400).eval()
    report = load_pretrained(ours, theirs.state_dict(), fmt="torchvision", log=None)
    assert report.fresh == {} and len(report.loaded) == len(ours.state_dict())
    assert set(report.unused.values()) == {"derived buffer, recomputed by the model"}
    x = torch.randn(1, 3, 32, 224, 224)
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    assert a.abs().max() > 1
    torch.testing.assert_close(b, a, rtol=0, atol=1e-4)


def test_other_clip_sizes_and_crops_match_too():
    """Padding, shifted-window masks and a temporally clamped window (T' = 3 < 4) agree."""
    theirs = _torchvision_mini(window=WINDOW)
    ours = SwinTransformer3D(**SWIN_MINI, window_size=WINDOW, num_classes=5).eval()
    load_pretrained(ours, theirs.state_dict(), fmt="torchvision", log=None)
    for shape in ((2, 3, 16, 64, 64), (1, 3, 6, 96, 80)):
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_stvit_models_take_the_torchvision_swin_blocks():
    theirs = _torchvision_mini()
    stvit = stvit_model(SWIN_MINI, num_classes=5)
    report = load_pretrained(stvit, theirs.state_dict(), fmt="torchvision", log=None)
    sd = theirs.state_dict()
    # stage 3 (features.4) block 2: its q and kv are the rows of torchvision's qkv
    torch.testing.assert_close(stvit.state_dict()["layers.2.blocks.2.attn.q.weight"], sd["features.4.2.attn.qkv.weight"][:64])
    torch.testing.assert_close(stvit.state_dict()["layers.2.blocks.2.mlp.fc2.weight"], sd["features.4.2.mlp.3.weight"])
    assert all("layer_scale" in k or k.endswith("global_centres") for k in report.fresh)


def test_another_swin_size_is_named_and_a_new_head_needs_reinit():
    bigger = _torchvision_mini(depths=(2, 2, 8, 2))
    with pytest.raises(CheckpointLoadError, match=r"not in the model: layers\.2\.blocks\.6\..*the checkpoint holds a "
                       r"Swin with embed_dim 16, depths \(2, 2, 8, 2\), the model is one with embed_dim 16, "
                       r"depths \(2, 2, 6, 2\)"):
        load_pretrained(SwinTransformer3D(**SWIN_MINI, num_classes=5), bigger.state_dict(), fmt="torchvision", log=None)
    model = SwinTransformer3D(**SWIN_MINI, num_classes=3)
    with pytest.raises(CheckpointLoadError, match=r"head\.fc\.weight: checkpoint \(5, 128\) vs model \(3, 128\)"):
        load_pretrained(model, _torchvision_mini().state_dict(), fmt="torchvision", log=None)
    report = load_pretrained(model, _torchvision_mini().state_dict(), fmt="torchvision", reinit_head=True, log=None)
    assert set(report.fresh) == {"head.fc.weight", "head.fc.bias"}
