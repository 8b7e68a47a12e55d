"""FLOP and parameter counting with fvcore, with attention counted.

Convention (as in the Swin, Video Swin and STViT papers): one multiply-add = one FLOP.
fvcore counts matmuls, linear layers, convolutions and norms (per element); it skips
element-wise ops, softmax and GELU, and has no handler for
``aten::scaled_dot_product_attention`` (counted as 0), so we register one:
q @ k^T plus attn @ v = batch x heads x Lq x Lk x (d_qk + d_v) multiply-adds.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

with warnings.catch_warnings():
    # fvcore.nn scripts its focal loss at import time, which torch now flags as deprecated:
    # fvcore's warning, not ours, printed on every run otherwise
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script", category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

__all__ = ["FlopReport", "count_flops", "count_parameters", "sdpa_flop_jit", "NOT_COUNTED"]

SDPA_OP = "aten::scaled_dot_product_attention"
# What the counter leaves out, stated next to every FLOP figure we print.
NOT_COUNTED = "softmax, GELU, element-wise adds/multiplies (residuals, biases, layer scales), pooling"


def sdpa_flop_jit(inputs: Sequence[Any], outputs: Sequence[Any]) -> int:
    """fvcore handle: multiply-adds of one ``scaled_dot_product_attention`` call.

    q: (..., Lq, d), k: (..., Lk, d), v: (..., Lk, dv); leading dims broadcast.
    """
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = [max(a, b) for a, b in zip(q[:-2], k[:-2])]
    Lq, d = q[-2], q[-1]
    Lk, dv = k[-2], v[-1]
    return math.prod(batch) * Lq * Lk * (d + dv)


@dataclass
class FlopReport:
    """FLOPs (multiply-adds) of one forward pass.

    Attributes:
        total: all counted FLOPs.
        by_module: FLOPs of each named submodule (``""`` is the whole model).
        uncounted_ops: ops fvcore saw but has no handler for, with their call counts.
    """

    total: int
    by_module: dict[str, int]
    uncounted_ops: dict[str, int] = field(default_factory=dict)

    def gflops(self, module: str = "") -> float:
        return self.by_module.get(module, 0) / 1e9


def count_flops(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> FlopReport:
    """Count the FLOPs of ``model(*inputs)`` in eval mode (train mode is restored afterwards)."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, inputs).set_op_handle(SDPA_OP, sdpa_flop_jit)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = analysis.total()
            by_module = dict(analysis.by_module())
            uncounted = dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)
    return FlopReport(total=total, by_module=by_module, uncounted_ops=uncounted)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
