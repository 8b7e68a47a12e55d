"""Reading checkpoint files: the one place a ``.pyth`` / ``.pth`` is unpickled, and where our own
format's version is checked.

:mod:`stvit_video.engine.checkpoint` documents our format and writes it; it reads through here,
and so does :func:`stvit_video.models.weights.load_pretrained` (our files as ``native``, and the
foreign layouts it converts), so every file is opened the same way: on the CPU, with
``weights_only=True``, and a file of a newer format version is refused by name.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import torch

__all__ = ["FORMAT_VERSION", "format_problem", "load_error_reason", "read_file"]

# the version of our own checkpoint dict (stvit_video.engine.checkpoint's format)
FORMAT_VERSION = 1


def read_file(path: Union[str, "os.PathLike[str]"]) -> Any:
    """``torch.load`` of ``path`` on the CPU, weights only (no code runs from the file).

    Raises whatever torch raises for an unreadable file; :func:`load_error_reason` words it.
    """
    return torch.load(path, map_location="cpu", weights_only=True)


def load_error_reason(e: BaseException) -> str:
    """One line on why a file failed to load (the weights-only unpickler's own reason, not its advice)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = text.split("Check the documentation of torch.load", 1)[0]
    return f"{type(e).__name__}: {' '.join(text.split()) or 'no message'}"


def format_problem(state: Any, required: Sequence[str]) -> Optional[str]:
    """Why ``state`` is not a usable checkpoint of our format with the ``required`` keys, or None."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a dict"
    if "format_version" not in state:
        return f"no 'format_version' key (top-level keys: {sorted(map(str, state))[:8]})"
    version = state["format_version"]
    if version != FORMAT_VERSION:
        return (f"format_version {version!r}; this stvit_video reads version {FORMAT_VERSION} "
                f"(a newer file needs a newer stvit_video)")
    missing = [k for k in required if k not in state]
    if missing:
        return f"missing keys {missing}"
    return None
