#!/usr/bin/env python
"""Export a checkpoint: ``python tools/export.py best.pyth --out model.pt2`` (see ``--help``).

The logic lives in :mod:`stvit_video.export_cli` and :mod:`stvit_video.engine.export`.
"""
import sys

from stvit_video.export_cli import main

if __name__ == "__main__":
    sys.exit(main())
