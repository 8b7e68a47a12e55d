"""The model registry: every variant's FLOPs reference at full size (each model counted once),
the FLOP targets of the STViT variants, and create_model's overrides."""
import functools

import pytest
import torch

from stvit_video.models import STViTConfig, create_model, get_variant, list_variants
from stvit_video.utils.flops import count_flops


@functools.lru_cache(maxsize=None)
def gflops(name: str) -> float:
    """GFLOPs per view of variant ``name`` at its input size; each full-size model counted once."""
    variant = get_variant(name)
    return count_flops(create_model(name), torch.zeros(1, *variant.input_size)).total / 1e9


@pytest.mark.parametrize("name", list_variants())
def test_flops_match_the_registered_reference(name):
    variant = get_variant(name)
    assert gflops(name) == pytest.approx(variant.gflops, abs=0.01)
    if variant.paper_gflops is not None:  # the official Video Swin-T measures 88.06 G under fvcore
        assert gflops(name) == pytest.approx(variant.paper_gflops, rel=0.02)


def test_stvit_r_swin_t_perframe_cuts_24_percent():
    cut = 1 - gflops("stvit_r_swin3d_tiny_perframe") / gflops("swin3d_tiny")
    assert cut == pytest.approx(0.24, abs=0.01)  # the MAC-model estimate: 66.4 - 66.5 G


def test_plain_stvit_swin_t_targets():
    assert gflops("stvit_swin3d_tiny_perframe") <= 64.0
    assert gflops("stvit_swin3d_tiny_spatiotemporal") <= 57.0


@pytest.mark.parametrize("size", ["small", "base"])
def test_three_units_cut_swin_s_and_b_by_at_least_35_percent(size):
    assert gflops(f"stvit_r_swin3d_{size}_perframe") <= 0.65 * gflops(f"swin3d_{size}")


def test_create_model_overrides_arguments_and_stvit_fields():
    model = create_model("stvit_r_swin3d_tiny_perframe", num_classes=5, embed_dim=16, num_heads=(1, 2, 4, 8),
                         stvit={"sample_window_size": 2, "recovery": False})
    assert model.stvit == STViTConfig(sample_window_size=2, recovery=False)
    assert model.head.fc.out_features == 5 and model.embed_dim == 16
    assert get_variant("stvit_r_swin3d_tiny_perframe").stvit == STViTConfig()  # the registry is untouched


def test_stvit_fields_for_a_plain_swin_and_unknown_names_are_errors():
    with pytest.raises(ValueError, match="swin3d_tiny has no semantic tokens"):
        create_model("swin3d_tiny", stvit={"num_units": 1})
    with pytest.raises(KeyError, match="unknown model variant 'swin3d_tiny2'; registered: swin3d_tiny, "):
        create_model("swin3d_tiny2")


def test_every_variant_states_its_input_and_normalisation():
    for name in list_variants():
        v = get_variant(name)
        expected = (3, 8, 56, 56) if "_demo" in name else (3, 32, 224, 224)  # CPU demo variants: configs/demo
        assert v.input_size == expected and len(v.mean) == len(v.std) == 3 and v.description
