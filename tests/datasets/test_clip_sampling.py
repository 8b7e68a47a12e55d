import numpy as np
import pytest
import torch

from stvit_video.datasets.clip_sampling import ClipSpec, centre_clip, clip_at, random_clip, uniform_clip

SPEC = ClipSpec(num_frames=8, sampling_rate=2, target_fps=30)


def test_stride_at_target_fps_is_the_sampling_rate():
    clip = clip_at(SPEC, 60, 30.0, start=0)
    assert clip.indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert clip.indices.dtype == np.int64 and clip.padded == 0


def test_other_fps_are_mapped_to_the_target_fps():
    # 25 fps: clip frames are 2 * 25 / 30 = 1.667 video frames apart (same 0.533 s span)
    assert clip_at(SPEC, 50, 25.0, start=0).indices.tolist() == [0, 2, 3, 5, 7, 8, 10, 12]
    # 60 fps: twice as many video frames per clip step
    assert clip_at(SPEC, 200, 60.0, start=0).indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    # 29.97 fps: stride 1.998; the 1/1000 difference shows after ~250 frames only
    assert clip_at(SPEC, 50, 30000 / 1001, start=0).indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]


def test_uniform_test_clips_cover_first_and_last_frame():
    # max_start = 59 - 7 * 2 = 45 -> starts 0, 22.5, 45
    clips = [uniform_clip(SPEC, 60, 30.0, k, 3) for k in range(3)]
    assert clips[0].indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert clips[1].indices.tolist() == [23, 25, 27, 29, 31, 33, 35, 37]
    assert clips[2].indices.tolist() == [45, 47, 49, 51, 53, 55, 57, 59]
    assert [c.clip_index for c in clips] == [0, 1, 2]


@pytest.mark.parametrize("frames, fps", [(50, 25.0), (300, 30000 / 1001), (97, 24.0), (1000, 59.94)])
def test_last_test_clip_ends_on_the_last_frame(frames, fps):
    for k in (4, 10):
        assert uniform_clip(SPEC, frames, fps, 0, k).indices[0] == 0
        assert uniform_clip(SPEC, frames, fps, k - 1, k).indices[-1] == frames - 1


def test_one_test_clip_is_the_centre_clip():
    assert uniform_clip(SPEC, 60, 30.0, 0, 1).indices.tolist() == centre_clip(SPEC, 60, 30.0).indices.tolist()
    assert centre_clip(SPEC, 60, 30.0).indices.tolist() == [23, 25, 27, 29, 31, 33, 35, 37]


def test_short_video_repeats_the_last_frame():
    clip = centre_clip(SPEC, 10, 30.0)
    assert clip.indices.tolist() == [0, 2, 4, 6, 8, 9, 9, 9]
    assert clip.padded == 3
    for k in range(3):  # every test clip of a short video is the same padded clip
        assert uniform_clip(SPEC, 10, 30.0, k, 3).indices.tolist() == [0, 2, 4, 6, 8, 9, 9, 9]
    assert clip_at(SPEC, 1, 30.0, 0).indices.tolist() == [0] * 8


def test_random_clip_stays_inside_and_reaches_both_ends():
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(2000):
        clip = random_clip(SPEC, 30, 30.0, generator)  # max_start = 15
        assert clip.indices.min() >= 0 and clip.indices.max() <= 29
        assert np.all(np.diff(clip.indices) == 2)
        starts.add(int(clip.indices[0]))
    assert starts == set(range(16))


def test_random_clip_is_reproducible_with_a_seeded_generator():
    a = [random_clip(SPEC, 90, 30.0, torch.Generator().manual_seed(7)).indices.tolist() for _ in range(2)]
    assert a[0] == a[1]


def test_bad_arguments():
    with pytest.raises(IndexError):
        uniform_clip(SPEC, 60, 30.0, 3, 3)
    with pytest.raises(ValueError):
        clip_at(SPEC, 0, 30.0, 0)
    with pytest.raises(ValueError):
        SPEC.stride(0.0)
