"""``encoding.json``: how ``data_prep`` encoded a prepared data folder, which the tester quotes.

The file name and its reader live here, below both ``data_prep`` (which writes it) and the
engine (which reads it), so neither imports the other. Standard library only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

__all__ = ["ENCODING_INFO", "encoded_short_side"]

# Written by data_prep resize into its output folder, next to the lists.
ENCODING_INFO = "encoding.json"


def encoded_short_side(folder: str | os.PathLike) -> Optional[int]:
    """The short side ``data_prep`` resized the videos of ``folder`` to, or None when the folder
    has no readable ``encoding.json`` (videos prepared elsewhere)."""
    path = Path(folder) / ENCODING_INFO
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("short_side"))
    except (ValueError, TypeError, OSError, AttributeError):
        return None
