"""stvit-video: STViT semantic-token Video Swin Transformers for Kinetics.

Importing the package is cheap (no torch): subpackages load what they need when used.
"""
from stvit_video.version import __version__

__all__ = ["__version__"]
