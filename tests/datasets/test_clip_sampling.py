"""Clip positions as mmaction's SampleFrames (the official Video Swin recipe): raw-frame or
fps-normalised stride, segment-centred test clips, random train starts, looping short videos."""
import numpy as np
import pytest
import torch

from stvit_video.datasets.clip_sampling import (ClipSpec, centre_clip, clip_at, clip_starts, random_clip,
                                                segment_clip)

SPEC = ClipSpec(num_frames=8, sampling_rate=2, target_fps=30)
RAW = ClipSpec(num_frames=32, sampling_rate=2, target_fps=0)  # the Kinetics configs: 32 x 2 raw frames


def test_raw_frames_take_every_sampling_rate_th_frame_whatever_the_fps():
    for fps in (25.0, 30.0, 60.0, 30000 / 1001):
        assert clip_at(RAW, 300, fps, start=0).indices.tolist() == list(range(0, 64, 2))
    assert RAW.span(25.0) == 64  # mmaction's clip_len x frame_interval


def test_other_fps_are_mapped_to_the_target_fps():
    assert clip_at(SPEC, 60, 30.0, start=0).indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    # 25 fps: clip frames are 2 * 25 / 30 = 1.667 video frames apart (same 0.533 s span)
    assert clip_at(SPEC, 50, 25.0, start=0).indices.tolist() == [0, 2, 3, 5, 7, 8, 10, 12]
    # 60 fps: twice as many video frames per clip step
    assert clip_at(SPEC, 200, 60.0, start=0).indices.tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    # 29.97 fps: stride 1.998; the 1/1000 difference shows after ~250 frames only
    assert clip_at(SPEC, 50, 30000 / 1001, start=0).indices.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]


def test_test_clips_are_segment_centred_as_mmaction():
    # 300 frames, span 64: a = (300 - 64 + 1) / K; clip k starts at int(k * a + a / 2)
    assert clip_starts(RAW, 300, 30.0, 1) == [118]
    assert clip_starts(RAW, 300, 30.0, 2) == [59, 177]
    assert clip_starts(RAW, 300, 30.0, 4) == [29, 88, 148, 207]
    clips = [segment_clip(RAW, 300, 30.0, k, 4) for k in range(4)]
    assert [c.indices[0] for c in clips] == [29, 88, 148, 207] and [c.clip_index for c in clips] == [0, 1, 2, 3]
    assert clips[3].indices[-1] == 207 + 62 and all(c.padded == 0 for c in clips)
    # the centre clip (validation, the 1-view headline) is the one-clip case; for odd K it is the middle clip
    assert centre_clip(RAW, 300, 30.0).indices[0] == 118
    assert segment_clip(RAW, 300, 30.0, 1, 3).indices.tolist() == centre_clip(RAW, 300, 30.0).indices.tolist()


def test_train_starts_are_uniform_over_every_start_that_fits():
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(2000):
        clip = random_clip(SPEC, 30, 30.0, generator)  # span 16: starts 0 .. 14
        assert clip.indices.max() <= 29 and np.all(np.diff(clip.indices) == 2) and clip.padded == 0
        starts.add(int(clip.indices[0]))
    assert starts == set(range(15))


def test_random_clip_is_reproducible_with_a_seeded_generator():
    a = [random_clip(SPEC, 90, 30.0, torch.Generator().manual_seed(7)).indices.tolist() for _ in range(2)]
    assert a[0] == a[1]


def test_a_short_video_loops_or_repeats_its_last_frame():
    clip = centre_clip(SPEC, 10, 30.0)  # 10 frames < span 16: every clip starts at 0
    assert clip.indices.tolist() == [0, 2, 4, 6, 8, 0, 2, 4] and clip.padded == 3
    assert all(segment_clip(SPEC, 10, 30.0, k, 3).indices.tolist() == clip.indices.tolist() for k in range(3))
    assert random_clip(SPEC, 10, 30.0).indices.tolist() == clip.indices.tolist()
    repeat = SPEC._replace(out_of_bound="repeat_last")
    assert centre_clip(repeat, 10, 30.0).indices.tolist() == [0, 2, 4, 6, 8, 9, 9, 9]
    assert clip_at(SPEC, 1, 30.0, 0).indices.tolist() == [0] * 8


def test_bad_arguments():
    with pytest.raises(IndexError):
        segment_clip(SPEC, 60, 30.0, 3, 3)
    with pytest.raises(ValueError):
        clip_at(SPEC, 0, 30.0, 0)
    with pytest.raises(ValueError):
        SPEC.stride(0.0)
    with pytest.raises(ValueError, match="out_of_bound 'wrap'"):
        clip_at(SPEC._replace(out_of_bound="wrap"), 60, 30.0, 0)


def test_sliding_windows_cover_the_video_with_full_windows():
    from stvit_video.datasets.clip_sampling import frame_window, sliding_windows

    assert sliding_windows(10.0, 2.0, 2.0) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert sliding_windows(6.0, 2.0, 1.0) == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
    # the tail is covered by one more full window ending at the end
    assert sliding_windows(7.0, 3.0, 3.0) == [(0, 3), (3, 6), (4.0, 7.0)]
    assert sliding_windows(1.5, 4.0, 1.0) == [(0.0, 1.5)]  # shorter than the window: the whole video
    with pytest.raises(ValueError, match="window 0 s and stride 1 s must be > 0"):
        sliding_windows(5.0, 0.0, 1.0)
    assert frame_window(1.0, 2.0, 60, 30.0) == (30, 30)
    assert frame_window(1.9, 3.0, 60, 30.0) == (57, 3)  # clipped at the last frame
    with pytest.raises(ValueError, match="starts after the video's 60 frames"):
        frame_window(2.0, 3.0, 60, 30.0)
