"""Models. Imports only torch, torchvision and timm, so models run wherever torch runs."""
from stvit_video.models.build import MODEL_ARCHS, build_model
from stvit_video.models.stvit import STViTSwinTransformer3D
from stvit_video.models.swin3d import SwinTransformer3D

__all__ = ["MODEL_ARCHS", "STViTSwinTransformer3D", "SwinTransformer3D", "build_model"]
