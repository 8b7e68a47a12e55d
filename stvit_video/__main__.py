"""``python -m stvit_video`` = ``tools/run_net.py``."""
import sys

from stvit_video.cli import main

sys.exit(main())
