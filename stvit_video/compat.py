"""Compatibility shims for third-party packages, applied where they are first needed (never on
``import stvit_video``, which imports no torch and patches nothing).

pytorchvideo 0.1.5 (its last release) imports ``torchvision.transforms.functional_tensor``,
which torchvision 0.17 renamed to ``_functional_tensor``. We alias the old name to the new
module, and only when the old one is really missing, so nothing changes on torchvision < 0.17.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

_OLD_NAME = "torchvision.transforms.functional_tensor"
_NEW_NAME = "torchvision.transforms._functional_tensor"


def alias_torchvision_functional_tensor() -> bool:
    """Register ``torchvision.transforms.functional_tensor`` if torchvision lacks it.

    Returns:
        True if the alias was installed by this call, False if nothing was needed
        (the old module exists, the alias is already there, or torchvision is absent).
    """
    if _OLD_NAME in sys.modules:
        return False
    try:
        if importlib.util.find_spec(_OLD_NAME) is not None:
            return False
    except ModuleNotFoundError:  # torchvision itself is not installed
        return False
    try:
        new_module = importlib.import_module(_NEW_NAME)
    except ModuleNotFoundError:
        return False
    sys.modules[_OLD_NAME] = new_module
    return True


def apply() -> None:
    """Apply every shim of this module (idempotent)."""
    alias_torchvision_functional_tensor()
