"""Models. Imports only torch, torchvision and timm, so models run wherever torch runs."""
from stvit_video.models.build import build_model, build_model_from_arch, model_arch
from stvit_video.models.registry import VARIANTS, ModelVariant, create_model, get_variant, list_variants
from stvit_video.models.stvit import STViTConfig
from stvit_video.models.swin3d import SwinTransformer3D
from stvit_video.models.tome import ToMeConfig

__all__ = ["ModelVariant", "STViTConfig", "SwinTransformer3D", "ToMeConfig", "VARIANTS", "build_model",
           "build_model_from_arch", "create_model", "get_variant", "list_variants", "model_arch"]
