"""torch.compile: every variant's forward is one graph (no graph breaks in the blocks), and the
compiled model computes what the eager one does (aot_eager backend: fast, no C++ build)."""
import warnings

import pytest
import torch

from stvit_video.models import create_model

# the STViT variants hold Swin blocks too (stages 1-3), so these two cover every block type
VARIANTS = ["stvit_r_swin3d_tiny_perframe", "stvit_swin3d_tiny_spatiotemporal"]


@pytest.mark.parametrize("name", VARIANTS)
def test_compiled_forward_is_one_graph_and_matches_eager(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, embed_dim=16, num_heads=(1, 2, 4, 8)).eval()
    x = torch.randn(2, 3, 4, 64, 64)
    torch._dynamo.reset()
    with torch.no_grad():
        eager = model(x)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # fullgraph: a graph break anywhere in the blocks is an error, not a silent split
            compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    # the cached masks and indices are traced as constants, not through a bypassed cache
    assert not [w for w in caught if "lru_cache" in str(w.message)]
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
