#!/usr/bin/env python
"""What a checkpoint's model looks at: ``python tools/visualize.py --checkpoint best.pyth video.mp4 --out pictures/``.

See ``--help``; the logic lives in :mod:`stvit_video.visualize_cli` and :mod:`stvit_video.engine.visualize`.
"""
import sys

from stvit_video.visualize_cli import main

if __name__ == "__main__":
    sys.exit(main())
