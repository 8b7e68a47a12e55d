#!/usr/bin/env python
"""Classes of video files with a trained checkpoint: ``python tools/predict.py best.pyth video.mp4 ...``.

See ``--help``; the logic lives in :mod:`stvit_video.predict_cli` and :mod:`stvit_video.engine.predict`.
"""
import sys

from stvit_video.predict_cli import main

if __name__ == "__main__":
    sys.exit(main())
