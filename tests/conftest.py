"""Suite-wide settings: deterministic, quiet, CPU-sized."""
import logging
import warnings

import pytest
import torch

from stvit_video.utils.cpu_malloc import keep_freed_cpu_memory

# pytorchvideo / fvcore emit deprecation noise that hides real warnings
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

# CPU runs of run_net.py reuse freed tensor memory (CPU_MALLOC_REUSE); the setting is
# process-wide, so the whole suite runs with it rather than from whichever test launches first
keep_freed_cpu_memory()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Undo what a command run in-process did to the ``stvit_video`` logger (setup_logging turns
    propagation off and adds handlers), so every test's caplog sees the package's records."""
    yield
    logger = logging.getLogger("stvit_video")
    logger.propagate = True
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
