"""Suite-wide settings: deterministic, quiet, CPU-sized."""
import warnings

import pytest
import torch

# pytorchvideo / fvcore emit deprecation noise that hides real warnings
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
