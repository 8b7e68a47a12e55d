"""FLOP counting: the SDPA handler and mode handling (the models' references: tests/models/test_registry.py)."""
import torch
import torch.nn.functional as F
from torch import nn

from stvit_video.models import create_model
from stvit_video.utils.flops import count_flops


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_is_counted_as_two_matmuls():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    report = count_flops(_Attention(), (q, k, v))
    assert report.total == 2 * 3 * 5 * 7 * (8 + 4)


def test_count_restores_train_mode():
    model = create_model("stvit_r_swin3d_tiny_perframe", embed_dim=16, num_heads=(1, 2, 4, 8)).train()
    count_flops(model, torch.zeros(1, 3, 4, 64, 64))
    assert model.training
