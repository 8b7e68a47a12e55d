"""Named model variants, timm style: ``create_model("stvit_r_swin3d_tiny_perframe", num_classes=10)``.

Each variant fixes the architecture (Swin sizes and, for STViT, where and how semantic tokens
replace blocks; for the ToMe baselines, how many tokens stage 3 merges) and records what a
user needs around it: the input it was designed for, the normalisation, and its FLOPs per
view at that input. The Swin-T/S/B sizes live here and only here; configs name a variant in
``MODEL.ARCH`` and tests and tools build from this table.

FLOPs: fvcore at batch 1, one multiply-add = one FLOP, ``scaled_dot_product_attention``
counted by :func:`stvit_video.utils.flops.sdpa_flop_jit`; softmax and GELU not counted. The
suite checks every figure (tests/models/test_registry.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from stvit_video.models.stvit import STViTConfig
from stvit_video.models.swin3d import SwinTransformer3D
from stvit_video.models.tome import ToMeConfig

__all__ = ["STAGE_REPLACEMENTS", "ModelVariant", "ReplacementKind", "VARIANTS", "create_model", "get_variant", "list_variants", "register_variant",
           "SWIN_SIZES"]

# Kinetics models start from ImageNet weights and keep their normalisation (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Video Swin sizes (Liu et al., CVPR 2022, Table 1 and the official configs).
SWIN_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


@dataclass(frozen=True)
class ModelVariant:
    """A named architecture.

    Attributes:
        name: registry key, e.g. ``swin3d_tiny``.
        description: one line for listings.
        kwargs: constructor arguments of :class:`SwinTransformer3D` that define the variant
            (sizes, ``stvit`` for semantic-token variants, ``tome`` for token merging).
        input_size: (C, T, H, W) of one view the variant is designed and counted for.
        mean, std: per-channel normalisation of RGB values in [0, 1].
        gflops: FLOPs per view at ``input_size`` (see the module docstring).
        paper_gflops: the figure the paper reports, when there is one.
    """

    name: str
    description: str
    kwargs: dict[str, Any]
    input_size: tuple[int, int, int, int] = (3, 32, 224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    gflops: Optional[float] = None
    paper_gflops: Optional[float] = None

    @property
    def stvit(self) -> Optional[STViTConfig]:
        return self.kwargs.get("stvit")

    @property
    def tome(self) -> Optional[ToMeConfig]:
        return self.kwargs.get("tome")


class ReplacementKind(NamedTuple):
    """A stage replacement a variant may carry in its ``kwargs``: its config class, and words for
    messages about a variant without it (what it does, which variants have it)."""

    config: type
    what: str
    variants: str


# constructor argument -> the stage replacement it takes; build.py maps each one's fields to config keys
STAGE_REPLACEMENTS: dict[str, ReplacementKind] = {
    "stvit": ReplacementKind(STViTConfig, "semantic tokens", "an stvit_*"),
    "tome": ReplacementKind(ToMeConfig, "token merging", "a tome_*"),
}

VARIANTS: dict[str, ModelVariant] = {}


def register_variant(variant: ModelVariant) -> ModelVariant:
    """Add ``variant`` to the registry (a name can be registered once)."""
    if variant.name in VARIANTS:
        raise ValueError(f"model variant {variant.name!r} is already registered")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str) -> ModelVariant:
    """The variant called ``name``; KeyError lists the registered names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown model variant {name!r}; registered: {', '.join(VARIANTS)}") from None


def list_variants() -> list[str]:
    """Registered names, in registration order (baselines first, then their STViT versions)."""
    return list(VARIANTS)


def create_model(name: str, **overrides: Any) -> SwinTransformer3D:
    """Build variant ``name`` (randomly initialised, on the CPU), with constructor ``overrides``.

    ``stvit`` may be given as a dict of :class:`STViTConfig` fields to change, e.g.
    ``create_model("stvit_r_swin3d_tiny_perframe", stvit={"sample_window_size": 4})``, and
    ``tome`` as a dict of :class:`ToMeConfig` fields, e.g. ``tome={"merge_ratio": 0.0}``.
    """
    variant = get_variant(name)
    kwargs = dict(variant.kwargs)
    for arg, kind in STAGE_REPLACEMENTS.items():
        changes = overrides.pop(arg, None)
        if isinstance(changes, dict):
            if variant.kwargs.get(arg) is None:
                raise ValueError(f"{name} has no {kind.what}; {arg} fields {sorted(changes)} do not apply")
            kwargs[arg] = dataclasses.replace(variant.kwargs[arg], **changes)
        elif changes is not None:
            kwargs[arg] = changes
    kwargs.update(overrides)
    return SwinTransformer3D(**kwargs)


def _register(name: str, size: str, description: str, gflops: float, paper_gflops: Optional[float] = None,
              stvit: Optional[STViTConfig] = None, tome: Optional[ToMeConfig] = None) -> None:
    kwargs = dict(SWIN_SIZES[size])
    if stvit is not None:
        kwargs["stvit"] = stvit
    if tome is not None:
        kwargs["tome"] = tome
    register_variant(ModelVariant(name=name, description=description, kwargs=kwargs, gflops=gflops,
                                  paper_gflops=paper_gflops))


_PERFRAME = STViTConfig(mode="perframe")
_SPATIOTEMPORAL = STViTConfig(mode="spatiotemporal", temporal_pool=2)

_register("swin3d_tiny", "tiny", "Video Swin-T", 88.06, 87.9)
_register("swin3d_small", "small", "Video Swin-S", 166.12, 165.9)
_register("swin3d_base", "base", "Video Swin-B", 281.92, 281.6)
_register("stvit_r_swin3d_tiny_perframe", "tiny", "STViT-R Swin-T, per-frame semantic tokens, 1 unit",
          66.55, stvit=_PERFRAME)
_register("stvit_r_swin3d_tiny_spatiotemporal", "tiny",
          "STViT-R Swin-T, spatiotemporal semantic tokens (2x7x7 -> 3x3), 1 unit", 65.73, stvit=_SPATIOTEMPORAL)
_register("stvit_swin3d_tiny_perframe", "tiny", "plain STViT Swin-T, per-frame, stage 4 on the semantic grid",
          51.94, stvit=dataclasses.replace(_PERFRAME, recovery=False))
_register("stvit_swin3d_tiny_spatiotemporal", "tiny",
          "plain STViT Swin-T, spatiotemporal, stage 4 on the semantic grid", 48.96,
          stvit=dataclasses.replace(_SPATIOTEMPORAL, recovery=False))
_register("stvit_r_swin3d_small_perframe", "small", "STViT-R Swin-S, per-frame semantic tokens, 3 units",
          101.59, stvit=dataclasses.replace(_PERFRAME, num_units=3))
_register("stvit_r_swin3d_base_perframe", "base", "STViT-R Swin-B, per-frame semantic tokens, 3 units",
          173.18, stvit=dataclasses.replace(_PERFRAME, num_units=3))
# ToMe baselines (stvit_video/models/tome.py): a trained Swin's weights, unchanged, with every block of
# stage 3 merging tokens in each window; the ratio is set so the FLOPs equal the STViT-R variant's.
_register("tome_swin3d_tiny", "tiny", "ToMe Swin-T, stage 3 merges 56% of each window's tokens "
          "(training-free baseline at STViT-R Swin-T's FLOPs)", 66.67, tome=ToMeConfig(merge_ratio=0.56))


# --- Demo variants (configs/demo, ``run_net.py --cfg demo``): trained from scratch on the built-in
# mini-Kinetics on 2 CPU cores in a few minutes. Video Swin's official recipe (linear patch
# embedding, trunc-normal init) barely moves off chance in that budget; a 3-layer convolutional
# stem to (2, 8, 8) patches and PyTorch's default init train to > 90% (see configs/demo). At
# 8 x 56 x 56 the one stage sees 4 x 7 x 7 tokens, a single 7 x 7 window per slice, whose
# 49 tokens the semantic-token unit replaces by 9 (s = 3).
_DEMO = dict(embed_dim=96, depths=(6,), num_heads=(3,), patch_size=(2, 8, 8), stem_channels=(16, 32, 64),
             weight_init="pytorch")
_DEMO_INPUT = (3, 8, 56, 56)
register_variant(ModelVariant(
    name="swin3d_demo", description="Video Swin demo size (conv stem, one stage of 6 blocks), for the CPU demo",
    kwargs=dict(_DEMO), input_size=_DEMO_INPUT, gflops=0.2069))
register_variant(ModelVariant(
    name="stvit_r_swin3d_demo_perframe",
    description="STViT-R demo size, per-frame semantic tokens (1 unit), for the CPU demo",
    kwargs=dict(_DEMO, stvit=dataclasses.replace(_PERFRAME, stage=0)), input_size=_DEMO_INPUT, gflops=0.1044))
register_variant(ModelVariant(
    name="stvit_swin3d_demo_perframe",
    description="plain STViT demo size, per-frame, ends on the semantic grid, for the CPU demo",
    # layer scales at 1: STGM layer 1 replaces its input by layer_scale x attention (no residual, as
    # in STViT), and without recovery everything after it flows through S, so from scratch the
    # paper's 1e-5 starts the model input-independent (logits vary ~1000x less) and 30 demo epochs
    # stayed at chance (13.8%); with 1.0 it learns (README "Token merging baseline")
    kwargs=dict(_DEMO, stvit=dataclasses.replace(_PERFRAME, stage=0, recovery=False, layer_scale_init=1.0)),
    input_size=_DEMO_INPUT, gflops=0.0892))
register_variant(ModelVariant(
    name="tome_swin3d_demo",
    description="ToMe demo size, the stage merges 60.5% of each window's tokens (at the demo STViT-R's FLOPs)",
    kwargs=dict(_DEMO, tome=ToMeConfig(merge_ratio=0.605, stage=0)), input_size=_DEMO_INPUT, gflops=0.1047))
