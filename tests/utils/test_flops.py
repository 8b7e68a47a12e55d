"""FLOP counting: the SDPA handler, and the reference figures at 32 x 224 x 224 (batch 1)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stvit_video.models import STViTSwinTransformer3D, SwinTransformer3D
from stvit_video.utils.flops import count_flops

from tests.models.conftest import SWIN_B, SWIN_S, SWIN_T

VIEW = torch.zeros(1, 3, 32, 224, 224)


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_is_counted_as_two_matmuls():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    report = count_flops(_Attention(), (q, k, v))
    assert report.total == 2 * 3 * 5 * 7 * (8 + 4)


def _gflops(model):
    return count_flops(model, VIEW).total / 1e9


@pytest.fixture(scope="module")
def swin_t_gflops():
    return _gflops(SwinTransformer3D(**SWIN_T))


def test_swin_t_matches_the_official_count(swin_t_gflops):
    # the official Video Swin-T (explicit matmul attention) measures 88.06 G under fvcore
    assert swin_t_gflops == pytest.approx(88.06, abs=0.01)
    assert swin_t_gflops == pytest.approx(87.9, rel=0.02)


@pytest.mark.parametrize("arch, reference", [(SWIN_S, 165.9), (SWIN_B, 281.6)])
def test_swin_s_and_b_within_2_percent_of_the_paper(arch, reference):
    assert _gflops(SwinTransformer3D(**arch)) == pytest.approx(reference, rel=0.02)


def test_stvit_r_swin_t_perframe_one_unit_9_tokens(swin_t_gflops):
    gflops = _gflops(STViTSwinTransformer3D(**SWIN_T))
    assert gflops == pytest.approx(66.5, abs=0.5)  # the MAC-model estimate: 66.4 - 66.5 G
    assert 1 - gflops / swin_t_gflops == pytest.approx(0.24, abs=0.01)


def test_a_perframe_swin_t_at_most_64_gflops():
    assert _gflops(STViTSwinTransformer3D(**SWIN_T, recovery=False)) <= 64.0


def test_a_spatiotemporal_swin_t_at_most_57_gflops():
    model = STViTSwinTransformer3D(**SWIN_T, mode="spatiotemporal", temporal_pool=2, recovery=False)
    assert _gflops(model) <= 57.0


@pytest.mark.parametrize("arch", [SWIN_S, SWIN_B], ids=["swin_s", "swin_b"])
def test_three_units_cut_swin_s_and_b_by_at_least_35_percent(arch):
    base = _gflops(SwinTransformer3D(**arch))
    assert _gflops(STViTSwinTransformer3D(**arch, num_units=3)) <= 0.65 * base


def test_count_restores_train_mode():
    model = STViTSwinTransformer3D(embed_dim=16, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8)).train()
    count_flops(model, torch.zeros(1, 3, 4, 64, 64))
    assert model.training
