#!/usr/bin/env python
"""Train / test / inspect a model: ``python tools/run_net.py --cfg kinetics400 [KEY VALUE ...]``.

See ``--help``; the logic lives in :mod:`stvit_video.cli`.
"""
import sys

from stvit_video.cli import main

if __name__ == "__main__":
    sys.exit(main())
