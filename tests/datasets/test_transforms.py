import numpy as np
import pytest
import torch

from stvit_video.datasets.mixup import VideoMixup
from stvit_video.bench.videos import frame_pattern
from stvit_video.datasets.transforms import (
    EvalTransform, TrainTransform, horizontal_flip, normalize_to_cthw, parse_rand_augment, random_crop,
    random_resized_crop, random_scaled_crop, random_short_side_scale, short_side_scale, stack_views, to_tchw, uniform_crop,
)
from stvit_video.utils.errors import ConfigError

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def _frames(t: int = 4, h: int = 48, w: int = 64) -> torch.Tensor:
    """uint8 (T, H, W, C) synthetic frames."""
    return torch.from_numpy(np.stack([frame_pattern(i, h, w) for i in range(t)]))


def _columns(t: int, c: int, h: int, w: int) -> torch.Tensor:
    """(T, C, H, W) uint8 whose value is the column index: tells where a crop came from."""
    return torch.arange(w, dtype=torch.uint8).expand(t, c, h, w)


def test_to_tchw_is_a_view_and_checks_its_input():
    frames = _frames()
    x = to_tchw(frames)
    assert x.shape == (4, 3, 48, 64) and x.data_ptr() == frames.data_ptr()
    assert torch.equal(x[2, :, 5, 7], frames[2, 5, 7])
    with pytest.raises(ValueError, match=r"\(T, H, W, C\) uint8"):
        to_tchw(frames.float())


def test_normalize_to_cthw_layout_and_values():
    frames = _frames()
    out = normalize_to_cthw(to_tchw(frames), (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    assert out.shape == (3, 4, 48, 64) and out.dtype == torch.float32 and out.is_contiguous()
    expected = (frames[1, 5, 7].float() / 255 - torch.tensor([0.5, 0.25, 0.0])) / torch.tensor([0.5, 0.25, 1.0])
    assert torch.allclose(out[:, 1, 5, 7], expected, atol=1e-6)
    raw = normalize_to_cthw(to_tchw(frames), (0.0,) * 3, (1.0,) * 3)
    assert torch.equal(raw, frames.permute(3, 0, 1, 2).float() / 255)


def test_short_side_scale_keeps_aspect():
    assert short_side_scale(to_tchw(_frames(2, 48, 64)), 56).shape == (2, 3, 56, 74)
    assert short_side_scale(to_tchw(_frames(2, 64, 48)), 56).shape == (2, 3, 74, 56)
    assert short_side_scale(to_tchw(_frames(2, 240, 320)), 224).shape == (2, 3, 224, 298)
    with pytest.raises(ValueError, match=r"\(T, C, H, W\) uint8"):
        short_side_scale(torch.rand(2, 3, 48, 64), 56)


def test_three_crops_along_the_long_side():
    x = _columns(2, 3, 48, 64)
    left, centre, right = (uniform_crop(x, 48, i) for i in range(3))
    assert [int(c[0, 0, 0, 0]) for c in (left, centre, right)] == [0, 8, 16]
    assert all(c.shape == (2, 3, 48, 48) for c in (left, centre, right))
    portrait = torch.arange(64, dtype=torch.uint8).view(64, 1).expand(2, 3, 64, 48)  # value = row
    assert [int(uniform_crop(portrait, 48, i)[0, 0, 0, 0]) for i in range(3)] == [0, 8, 16]
    assert int(uniform_crop(_columns(1, 1, 48, 63), 48, 1)[0, 0, 0, 0]) == 8  # centre rounded up


def test_random_crop_and_flip():
    torch.manual_seed(0)
    x = _columns(2, 3, 48, 64)
    lefts = {int(random_crop(x, 48)[0, 0, 0, 0]) for _ in range(200)}
    assert lefts == set(range(17))
    flips = {int(horizontal_flip(x)[0, 0, 0, 0]) for _ in range(50)}
    assert flips == {0, 63}
    with pytest.raises(ValueError, match="scale it first"):
        random_crop(x, 56)


def test_random_scaled_crop_is_scale_then_crop_within_a_pixel():
    """The same draws as scaling the short side and cropping, resizing only the crop's box: a ramp
    of 3 levels per source pixel (x in red, y in green) lands within a source pixel of where the
    two-step transform puts it; at scale 1 the crop is the exact slice, a view."""
    t, h, w = 2, 48, 64
    ramp = torch.zeros((t, h, w, 3), dtype=torch.uint8)
    ramp[..., 0] = (torch.arange(w) * 3).view(1, 1, w)
    ramp[..., 1] = (torch.arange(h) * 3).view(1, h, 1)
    x = to_tchw(ramp)
    worst = 0.0
    for seed in range(40):
        torch.manual_seed(seed)
        fused = random_scaled_crop(x, 40, 48, 60, antialias=False)
        torch.manual_seed(seed)
        reference = random_crop(random_short_side_scale(x, 48, 60, antialias=False), 40)
        assert fused.shape == reference.shape == (t, 3, 40, 40)
        worst = max(worst, float((fused[:, :2].float() - reference[:, :2].float()).abs().max()))
    assert worst <= 3.0, worst
    torch.manual_seed(0)
    same = random_scaled_crop(x, 40, 48, 48)  # 48 is the short side: no resize
    torch.manual_seed(0)
    assert torch.equal(same, random_crop(random_short_side_scale(x, 48, 48), 40))
    assert same.data_ptr() >= x.data_ptr() and same.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    with pytest.raises(ValueError, match="random_scaled_crop of 56 from a 48x64 clip"):
        random_scaled_crop(x, 56, 40, 40)


def test_random_resized_crop_size():
    out = random_resized_crop(to_tchw(_frames(4, 48, 64)), 32, (0.08, 1.0), (0.75, 1.333))
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8


def test_stack_views_layout():
    x = to_tchw(_frames())  # (T, C, H, W), channels-last memory
    out = stack_views([x[..., :48], x[..., 16:]])
    assert out.shape == (2, 3, 4, 48, 48) and out.dtype == torch.uint8
    # the decoder's (T, H, W, C) memory order: a plain copy, made contiguous on the device
    assert out.is_contiguous(memory_format=torch.channels_last_3d) and out.permute(0, 2, 3, 4, 1).is_contiguous()
    assert torch.equal(out[1, :, 2], x[2, :, :, 16:])
    with pytest.raises(ValueError, match=r"\(T, C, H, W\) uint8"):
        stack_views([x.float()])


def test_eval_transform_crops_are_exact_uint8_slices_of_one_scaled_clip():
    frames = _frames()
    transform = EvalTransform(short_side=48, crop_size=48)
    three = transform(frames, 3)
    assert three.shape == (3, 3, 4, 48, 48) and three.dtype == torch.uint8
    cthw = frames.permute(3, 0, 1, 2)
    for crop, left in enumerate((0, 8, 16)):  # left, centre, right along the 64-pixel width
        assert torch.equal(three[crop], cthw[..., left : left + 48])
    assert torch.equal(transform(frames)[0], three[1])  # one crop = the centre crop
    with pytest.raises(ValueError, match="1 crop .centre. or 3"):
        transform(frames, 2)


def test_eval_transform_scales_once_for_every_crop(monkeypatch):
    import stvit_video.datasets.transforms as transforms

    calls = []
    real = transforms.short_side_scale
    monkeypatch.setattr(transforms, "short_side_scale", lambda x, size: calls.append(size) or real(x, size))
    out = EvalTransform(short_side=56, crop_size=56)(_frames(4, 48, 64), 3)
    assert out.shape == (3, 3, 4, 56, 56) and calls == [56]


@pytest.mark.parametrize("relative", [(), (0.2, 1.0)])
def test_train_transform_shapes_with_every_augmentation(relative):
    torch.manual_seed(0)
    transform = TrainTransform(crop_size=56, jitter_scales=(64, 80), relative_scales=relative,
                               rand_augment="rand-m7-n4-mstd0.5-inc1")
    for frames in (_frames(4, 48, 64), _frames(4, 24, 32)):  # the second is smaller than the crop
        out = transform(frames)
        assert out.shape == (1, 3, 4, 56, 56) and out.dtype == torch.uint8
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert "rand-m7" in repr(transform)


def test_train_transform_views_are_independent_augmentations_of_one_clip():
    torch.manual_seed(0)
    frames = _frames(4, 48, 64)
    out = TrainTransform(crop_size=48, jitter_scales=(48, 64))(frames, 4)
    assert out.shape == (4, 3, 4, 48, 48)
    assert len({tuple(v.flatten()[::97].tolist()) for v in out}) > 1  # different crops / flips
    # every view comes from the same frames, in order: the bottom rows' blue is 7 x frame index
    blue = torch.tensor([0, 7, 14, 21], dtype=torch.uint8).view(1, 4, 1)
    assert torch.equal(out[:, 2, :, -1, :], blue.expand(4, 4, 48))


def test_parse_rand_augment():
    assert tuple(parse_rand_augment("rand-m7-n4-mstd0.5-inc1")) == (7, 4, 0.5, 0.5)
    assert tuple(parse_rand_augment("rand-m9-n2-p0.8")) == (9, 2, 0.5, 0.8)
    for bad in ("auto-m7", "rand-m7-x3", "rand-p2"):
        with pytest.raises(ConfigError, match="AUG.AA_TYPE"):
            parse_rand_augment(bad)


def test_video_mixup_targets_and_cutmix_box():
    np.random.seed(0)
    frames = torch.rand(4, 3, 5, 16, 16)
    original = frames.clone()
    labels = torch.tensor([0, 1, 2, 3])
    mixed, targets = VideoMixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5,
                                label_smoothing=0.1, num_classes=5)(frames, labels)
    assert mixed.shape == (4, 3, 5, 16, 16) and targets.shape == (4, 5)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    # clip 0 took a box from clip 3 (the batch reversed): the same box in every channel and frame
    from_other = (mixed[0] == original[3]) & (mixed[0] != original[0])
    assert from_other.any()
    assert torch.equal(from_other, from_other[:1, :1].expand_as(from_other))
    lam = 1 - from_other[0, 0].float().mean()
    assert targets[0, 0] == pytest.approx(float(lam) * (0.9 + 0.02) + (1 - float(lam)) * 0.02, abs=1e-5)


def test_video_mixup_mixup_only_and_errors():
    np.random.seed(0)
    frames, labels = torch.rand(2, 3, 2, 8, 8), torch.tensor([0, 1])
    a, b = frames[0].clone(), frames[1].clone()
    mixed, targets = VideoMixup(mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5,
                                label_smoothing=0.0, num_classes=2)(frames, labels)
    lam = float(targets[0, 0])
    assert torch.allclose(mixed[0], lam * a + (1 - lam) * b, atol=1e-6)
    with pytest.raises(ValueError, match="even batch"):
        VideoMixup(mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, switch_prob=0.5, label_smoothing=0.0,
                   num_classes=2)(torch.rand(3, 3, 2, 8, 8), torch.tensor([0, 1, 0]))


def test_train_transform_without_flip_never_mirrors():
    torch.manual_seed(0)
    frames = _frames(2, 32, 32)
    flipping, keeping = (TrainTransform(crop_size=32, jitter_scales=(32, 32), flip=f) for f in (True, False))
    assert all(torch.equal(keeping(frames)[0], frames.permute(3, 0, 1, 2)) for _ in range(20))
    assert "flip=0.0" in repr(keeping) and "flip=0.5" in repr(flipping)
    mirrored = sum(torch.equal(flipping(frames)[0], frames.permute(3, 0, 1, 2).flip(-1)) for _ in range(40))
    assert 8 <= mirrored <= 32


def test_stacking_keeps_a_strided_crop_and_its_flip():
    x = torch.randint(0, 256, (4, 3, 10, 12), dtype=torch.uint8)
    crop = x[..., 1:9, 2:10]  # a strided slice, as crops are
    out = stack_views([crop, horizontal_flip(crop, prob=1.0)])
    assert torch.equal(out[0], crop.permute(1, 0, 2, 3)) and torch.equal(out[1], crop.flip(-1).permute(1, 0, 2, 3))


def test_train_resizing_is_antialiased_only_when_asked():
    """False: the bilinear of SlowFast / pytorchvideo (F.interpolate) and mmaction (cv2); True: antialiased."""
    frames = torch.randint(0, 256, (4, 48, 48, 3), dtype=torch.uint8)
    floats = frames.permute(0, 3, 1, 2).float()
    for antialias in (False, True):
        transform = TrainTransform(crop_size=24, jitter_scales=(24, 24), flip=False, antialias=antialias)
        out = transform(frames)[0].permute(1, 0, 2, 3).float()  # 48 -> 24: the crop is the whole frame
        reference = torch.nn.functional.interpolate(floats, size=(24, 24), mode="bilinear", align_corners=False,
                                                    antialias=antialias)
        assert (out - reference).abs().max() <= 1.0, antialias  # uint8 rounding
        assert f"antialias={antialias}" in repr(transform)
    plain = torch.nn.functional.interpolate(floats, size=(24, 24), mode="bilinear", align_corners=False)
    smooth = torch.nn.functional.interpolate(floats, size=(24, 24), mode="bilinear", align_corners=False,
                                             antialias=True)
    assert (plain - smooth).abs().max() > 20  # random pixels: the two differ, so the check above tells them apart
