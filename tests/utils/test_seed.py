"""seeded_rng: an item's random draws come from its seed, and the caller's generators are left as they were."""
import random

import numpy as np
import torch

from stvit_video.utils.seed import seeded_rng


def _draws() -> tuple[float, float, float]:
    return float(torch.rand(())), float(np.random.rand()), random.random()


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_seeded_rng_draws_from_the_seed_and_restores_the_callers_streams(monkeypatch):
    cuda_seeds = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", cuda_seeds.append)
    _seed_all(5)
    expected_after = _draws()
    _seed_all(5)
    cuda_seeds.clear()
    with seeded_rng(123):
        first = _draws()
    with seeded_rng(123):
        second = _draws()
    assert first == second != expected_after
    assert _draws() == expected_after  # the caller's streams go on as if nothing had drawn
    # the CPU generators only: reseeding CUDA here would change the caller's GPU stream for good
    # (fork_rng(devices=[]) does not restore it)
    assert cuda_seeds == []
