"""SHA-256 of files, read in chunks: one copy for checkpoints (provenance) and data_prep (duplicates).

Imports nothing of ours and no third-party package, so data_prep's worker processes use it
without loading torch.
"""
from __future__ import annotations

import hashlib
import os
from typing import Union

__all__ = ["file_sha256"]


def file_sha256(path: Union[str, "os.PathLike[str]"], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read ``chunk_bytes`` at a time).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()
