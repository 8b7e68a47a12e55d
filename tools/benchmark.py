#!/usr/bin/env python
"""Throughput measured side by side in one run: ``python tools/benchmark.py --what inference|train|loader``.

See ``--help``; the logic lives in :mod:`stvit_video.bench`.
"""
import sys

from stvit_video.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
