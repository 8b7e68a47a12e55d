"""Model sizes and builders for the model tests: every registered variant at a narrow width.

The generic checks (shapes, gradients, checkpointing, interface) depend on the structure of a
variant (depths, heads, where the semantic tokens sit), not on its width, so they run on the
registry's variants with their real depths and heads and a quarter of the channels. Full
widths are counted once, in the FLOP references of tests/models/test_registry.py. The
``variant`` fixture of tests/models/conftest.py is parametrised by :data:`VARIANT_NAMES`.
"""
import dataclasses

from stvit_video.models import STViTConfig, SwinTransformer3D, create_model, get_variant, list_variants
from stvit_video.models.registry import SWIN_SIZES

SWIN_T, SWIN_S, SWIN_B = SWIN_SIZES["tiny"], SWIN_SIZES["small"], SWIN_SIZES["base"]
# A narrow Swin-T for tests that run many forward passes.
SWIN_MINI = dict(embed_dim=16, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8))
_STVIT_FIELDS = {f.name for f in dataclasses.fields(STViTConfig)}


def narrow(name: str) -> dict:
    """A quarter of the variant's channels, its real depths and heads (head_dim 8)."""
    variant = get_variant(name)
    heads = variant.kwargs["num_heads"]
    return dict(embed_dim=8 * heads[0], num_heads=heads)


def stvit_model(size: dict, **kwargs) -> SwinTransformer3D:
    """A Swin of ``size`` with semantic tokens; STViTConfig fields and model arguments mixed."""
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in _STVIT_FIELDS}
    return SwinTransformer3D(**size, stvit=STViTConfig(**fields), **kwargs)


# variant name -> STViT settings changed on top of it, for combinations no registered variant has
_EXTRA = {
    "stvit_swin3d_tiny_spatiotemporal+global": ("stvit_swin3d_tiny_spatiotemporal", {"use_global": True}),
    "stvit_r_swin3d_base_perframe+s4+global": ("stvit_r_swin3d_base_perframe",
                                               {"sample_window_size": 4, "use_global": True}),
    "stvit_swin3d_small_perframe_1unit_s2": ("stvit_r_swin3d_small_perframe",
                                             {"num_units": 1, "recovery": False, "sample_window_size": 2}),
}


def variant_factory(name: str):
    """``factory(**kwargs)`` building variant ``name`` (registered or of :data:`VARIANT_NAMES`'s
    extras) narrow."""
    base, stvit = _EXTRA.get(name, (name, None))
    return lambda **kw: create_model(base, **narrow(base), **({"stvit": stvit} if stvit else {}), **kw)


VARIANT_NAMES = list_variants() + list(_EXTRA)
