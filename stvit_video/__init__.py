"""stvit-video: STViT semantic-token Video Swin Transformers for Kinetics."""
from stvit_video import compat as _compat
from stvit_video.version import __version__

_compat.apply()

__all__ = ["__version__"]
