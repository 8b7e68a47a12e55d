"""``python -m data_prep`` = ``stvit-prep`` (see :mod:`data_prep.cli`)."""
import sys

from data_prep.cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module too: run only once
    sys.exit(main())
