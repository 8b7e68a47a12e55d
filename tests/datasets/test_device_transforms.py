import random

import numpy as np
import pytest
import torch

from stvit_video.config import get_cfg_defaults
from stvit_video.datasets.device_transforms import ERASE_MODES, DeviceTransform, build_device_transform
from stvit_video.bench.videos import frame_pattern
from stvit_video.datasets.transforms import normalize_to_cthw

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _batch() -> torch.Tensor:
    """uint8 (2, 3, 4, 16, 256): synthetic frames, and every uint8 value in every channel."""
    frames = np.stack([frame_pattern(i, 16, 256) for i in range(4)])  # (T, H, W, C)
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)
    ramp = torch.arange(256, dtype=torch.uint8).expand(3, 4, 16, 256)
    return torch.stack([clip, ramp]).contiguous()


def test_normalisation_matches_the_host_float_path():
    batch = _batch()
    out = DeviceTransform(MEAN, STD)(batch, train=False)
    assert out.dtype == torch.float32 and out.shape == batch.shape and out.is_contiguous()
    for clip, got in zip(batch, out):
        expected = normalize_to_cthw(clip.permute(1, 0, 2, 3), MEAN, STD)  # today's (T, C, H, W) path
        assert (got - expected).abs().max() <= 1e-6
    assert torch.equal(batch, _batch())  # the uint8 input is not touched


def test_constants_are_cached_per_device_and_the_result_stays_there():
    transform = DeviceTransform(MEAN, STD)
    transform(_batch(), train=False)
    transform(_batch(), train=False)
    assert list(transform._constants) == [torch.device("cpu")]
    if torch.cuda.is_available():  # the trainer's case: the batch already moved with non_blocking
        gpu = _batch().cuda(non_blocking=True)
        out = transform(gpu, train=True)
        assert out.device == gpu.device and len(transform._constants) == 2
        assert torch.allclose(out.cpu(), transform(_batch(), train=False), atol=1e-6)


@pytest.mark.parametrize("mode", ERASE_MODES)
def test_erasing_one_box_through_every_frame_only_in_training(mode):
    random.seed(0)  # timm draws boxes with Python's random
    torch.manual_seed(0)
    transform = DeviceTransform((0.0,) * 3, (1.0,) * 3, erase_prob=1.0, erase_mode=mode)
    batch = torch.full((3, 3, 4, 32, 32), 255, dtype=torch.uint8)
    assert torch.equal(transform(batch, train=False), torch.ones(3, 3, 4, 32, 32))  # eval: no erasing
    out = transform(batch, train=True)
    for clip in out:
        erased = clip != 1.0  # (C, T, H, W): the clip is all ones except the erased box
        assert erased.any() and not erased.all()
        box = erased.any(0).any(0)  # (H, W) union over channels and frames
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        rectangle = torch.zeros_like(box)
        rectangle[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(box, rectangle)
        # the same box in every channel and frame (random fills are never exactly 1.0)
        assert torch.equal(erased, box.expand_as(erased))
    boxes = [(clip != 1.0).any(0).any(0) for clip in out]
    assert not (torch.equal(boxes[0], boxes[1]) and torch.equal(boxes[1], boxes[2]))  # a box per clip


def test_erasing_probability_zero_and_build_from_config():
    cfg = get_cfg_defaults()
    off = build_device_transform(cfg)  # AUG.ENABLE False: no erasing even with AUG.RE_PROB > 0
    assert off.erase_prob == 0.0 and off.mean == tuple(cfg.DATA.MEAN)
    batch = torch.full((2, 3, 2, 8, 8), 128, dtype=torch.uint8)
    assert torch.equal(off(batch, train=True), off(batch, train=False))
    cfg.merge_from_list(["AUG.ENABLE", True, "AUG.RE_PROB", 0.4, "AUG.RE_MODE", "const"])
    on = build_device_transform(cfg)
    assert (on.erase_prob, on.erase_mode) == (0.4, "const") and "const" in repr(on)


@pytest.mark.parametrize("frames, message", [
    (torch.zeros(2, 3, 4, 8, 8), "uint8"),
    (torch.zeros(3, 4, 8, 8, dtype=torch.uint8), r"\(B, C=3, T, H, W\)"),
    (torch.zeros(2, 1, 4, 8, 8, dtype=torch.uint8), "C=3"),
])
def test_bad_batches_are_rejected(frames, message):
    with pytest.raises(ValueError, match=message):
        DeviceTransform(MEAN, STD)(frames, train=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="one value per channel"):
        DeviceTransform((0.5,), STD)
    with pytest.raises(ValueError, match="must be > 0"):
        DeviceTransform(MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="erase_mode 'noise'"):
        DeviceTransform(MEAN, STD, erase_mode="noise")
    with pytest.raises(ValueError, match="erase_prob"):
        DeviceTransform(MEAN, STD, erase_prob=1.5)
