"""Model variants every generic model test runs on (the registry of shipped architectures)."""
import pytest

from stvit_video.models import STViTSwinTransformer3D, SwinTransformer3D

SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
SWIN_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
# A narrow Swin for tests that run many forward passes.
SWIN_MINI = dict(embed_dim=16, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8))

VARIANTS = {
    "swin_t": lambda **kw: SwinTransformer3D(**SWIN_T, **kw),
    "swin_s": lambda **kw: SwinTransformer3D(**SWIN_S, **kw),
    "swin_b": lambda **kw: SwinTransformer3D(**SWIN_B, **kw),
    "stvit_r_t_perframe": lambda **kw: STViTSwinTransformer3D(**SWIN_T, **kw),
    "stvit_t_perframe": lambda **kw: STViTSwinTransformer3D(**SWIN_T, recovery=False, **kw),
    "stvit_r_t_spatiotemporal": lambda **kw: STViTSwinTransformer3D(
        **SWIN_T, mode="spatiotemporal", temporal_pool=2, **kw),
    "stvit_t_spatiotemporal_global": lambda **kw: STViTSwinTransformer3D(
        **SWIN_T, mode="spatiotemporal", temporal_pool=2, recovery=False, use_global=True, **kw),
    "stvit_r_s_perframe_3units": lambda **kw: STViTSwinTransformer3D(**SWIN_S, num_units=3, **kw),
    "stvit_r_b_perframe_3units_s4": lambda **kw: STViTSwinTransformer3D(
        **SWIN_B, num_units=3, sample_window_size=4, use_global=True, **kw),
    "stvit_s_perframe_1unit_s2": lambda **kw: STViTSwinTransformer3D(
        **SWIN_S, num_units=1, recovery=False, sample_window_size=2, **kw),
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request):
    """(name, factory) of every shipped architecture variant."""
    return request.param, VARIANTS[request.param]
