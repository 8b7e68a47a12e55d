"""ONNX export of a frames -> logits module, and ONNX Runtime (CPU) to run the result.

    onnx_bytes = to_onnx(wrapped, example_frames)          # uint8 (B, 3, T, H, W) -> logits, any B
    model = OnnxRuntimeModel(onnx_bytes)                    # or a path to a .onnx file
    logits = model(frames_uint8)                            # (B, K) float32 torch tensor

Exporter: ``torch.onnx.export(..., dynamo=True)``, torch's default since 2.9 (it needs onnxscript),
fed the same ``torch.export`` program with the same dynamic batch as the ``.pt2`` format; opset
:data:`DEFAULT_OPSET` (20) unless asked otherwise, at least :data:`MIN_OPSET` (18). The graph has
one input ``frames`` (uint8, ``(B, 3, T, H, W)``) and one output ``logits`` (float32, ``(B, K)``),
weights inside the one file. onnx, onnxruntime and onnxscript are optional
(``pip install "stvit-video[onnx]"``); :func:`onnx_versions` says which are missing.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from stvit_video.utils.errors import ConfigError

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "MIN_OPSET", "OUTPUT_NAME", "OnnxRuntimeModel", "OnnxUnavailableError",
           "adaptive_max_pool3d_by_gather", "check_opset", "onnx_versions", "to_onnx", "unsupported_op"]

# Why the dynamo exporter, not the TorchScript one (dynamo=False): the TorchScript exporter is
# deprecated in this torch, traces Python values as constants (it warns on the window-mask code
# of swin3d.py) and cannot convert STViT's adaptive_max_pool3d either ("input size not
# accessible"); the dynamo exporter converts the torch.export graph that the .pt2 format ships
# and that torch.export already checks. Opset 20 is torch's own default for it (the opset it is
# tested at) and ONNX Runtime >= 1.17 runs it; 18 is the lowest its translations are written
# for (a lower request is raised to 18 without an error, so it is refused here instead); from
# 23 on, attention becomes ONNX's own Attention operator, which older runtimes lack.
DEFAULT_OPSET = 20
MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "frames", "logits"
BATCH_DIM = "B"  # the name of the dynamic batch dimension in the graph (as in the card's shapes)
PIP_HINT = 'pip install "stvit-video[onnx]"'
_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


class OnnxUnavailableError(ModuleNotFoundError):
    """onnx, onnxruntime or onnxscript is not installed; the message gives the pip command."""


def onnx_versions() -> dict[str, str]:
    """The installed versions of onnx, onnxruntime and onnxscript (for the card).

    Raises:
        OnnxUnavailableError: one of them is missing (all missing ones are named).
    """
    versions, missing = {}, []
    for name in _PACKAGES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            missing.append(name)
    if missing:
        raise OnnxUnavailableError(f"export: the onnx format needs {', '.join(missing)}, not installed; "
                                   f"install them with: {PIP_HINT}")
    return versions


def check_opset(opset: int) -> int:
    """``opset``, if the exporter can write it.

    Raises:
        ConfigError: below :data:`MIN_OPSET`.
    """
    if opset < MIN_OPSET:
        raise ConfigError(f"export: --opset {opset} is below {MIN_OPSET}, the lowest opset torch's ONNX exporter "
                          f"writes; use {MIN_OPSET} or more (default {DEFAULT_OPSET})")
    return opset


# --- adaptive max pooling in gathers ---------------------------------------------------------
# STViT pools each feature map to its semantic grid with F.adaptive_max_pool3d, whose bins
# overlap and may differ in stride ([0,3), [2,5), [4,7) for 7 -> 3; 14 -> 6 steps by 2, 2, 3, ...).
# ONNX has no adaptive pooling, onnxscript has no translation for it and torch's own
# decomposition covers evenly divisible sizes only, so the export decomposes it here.

def _bin_positions(size: int, bins: int, device: torch.device) -> torch.Tensor:
    """(bins, k) positions of each adaptive-pooling bin of an axis of ``size``: bin i covers
    [floor(i size / bins), ceil((i + 1) size / bins)); k is the widest bin's length and a
    narrower bin repeats its last position (a repeat changes neither its max nor the first
    position of the max). Built from arange: a constant tensor would be a mutation in the graph."""
    width = max(-(-(i + 1) * size // bins) - i * size // bins for i in range(bins))
    i = torch.arange(bins, device=device)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = -torch.div(-(i + 1) * size, bins, rounding_mode="floor")
    return torch.minimum(start[:, None] + torch.arange(width, device=device), end[:, None] - 1)


def _pooling_windows(t: torch.Tensor, positions: list[torch.Tensor]) -> torch.Tensor:
    """(*lead, D, H, W) -> (*lead, nD, nH, nW, kD * kH * kW): each output cell's input values."""
    lead = t.dim() - 3
    for axis, pos in enumerate(positions):
        dim = lead + 2 * axis  # each earlier axis has become two: (bins, k)
        t = t.index_select(dim, pos.flatten()).unflatten(dim, tuple(pos.shape))
    # (*lead, nD, kD, nH, kH, nW, kW) -> (*lead, nD, nH, nW, kD, kH, kW)
    t = t.permute(*range(lead), lead, lead + 2, lead + 4, lead + 1, lead + 3, lead + 5)
    return t.flatten(-3)


def adaptive_max_pool3d_by_gather(x: torch.Tensor, output_size: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``aten.adaptive_max_pool3d`` in index_select, max and gather, for any sizes.

    Args:
        x: (B, C, D, H, W) or (C, D, H, W); D, H, W static.
        output_size: (nD, nH, nW).

    Returns:
        values and int64 indices (flat in D * H * W), both (..., nD, nH, nW), equal to
        ``F.adaptive_max_pool3d(x, output_size, return_indices=True)``.
    """
    D, H, W = (int(s) for s in x.shape[-3:])
    positions = [_bin_positions(size, int(bins), x.device) for size, bins in zip((D, H, W), output_size)]
    values, local = _pooling_windows(x, positions).max(dim=-1)
    flat = _pooling_windows(torch.arange(D * H * W, device=x.device).view(D, H, W), positions)  # (nD, nH, nW, k)
    indices = torch.gather(flat.expand(*local.shape, flat.shape[-1]), -1, local.unsqueeze(-1)).squeeze(-1)
    return values, indices


# --- export --------------------------------------------------------------------------------------
# "No ONNX function found for <OpOverload(op='aten.x', overload='default')>" (the dispatcher),
# "... target=torch.ops.aten.x.default ..." (the node being translated)
_OP_PATTERNS = (re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)"),
                re.compile(r"target=torch\.ops\.([\w.]+)"))


def unsupported_op(error: BaseException) -> Optional[str]:
    """The operator (``aten.adaptive_max_pool2d.default``) that an exporter error, or an error
    it was raised from, names; None when none is named."""
    seen: list[BaseException] = []
    cause: Optional[BaseException] = error
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for pattern in _OP_PATTERNS:  # the dispatcher's message is the most precise: look for it first
        for e in reversed(seen):
            match = pattern.search(str(e))
            if match:
                return ".".join(match.groups())
    return None


def to_onnx(module: nn.Module, example: torch.Tensor, *, opset: int = DEFAULT_OPSET, max_batch: int = 4096) -> bytes:
    """The ONNX model of ``module`` (in eval mode) with a dynamic first dimension, serialised.

    Args:
        module: frames -> logits, e.g. :class:`stvit_video.engine.export.NormalizedClassifier`.
        example: an input with a batch of at least 2 (torch.export fixes a dimension of 1).
        opset: the ONNX opset, at least :data:`MIN_OPSET`.
        max_batch: upper bound of the dynamic batch.

    Raises:
        ConfigError: ``opset`` below :data:`MIN_OPSET`.
        ValueError: an example batch below 2.
        OnnxUnavailableError: onnxscript (the exporter's translations) is missing.
        RuntimeError: an operator has no ONNX translation (the message names it), or the
            exporter wrote another opset than asked.
    """
    check_opset(opset)
    if example.shape[0] < 2:
        raise ValueError(f"export: the example batch is {example.shape[0]}; give at least 2 for a dynamic batch")
    onnx_versions()
    # imported here, not at the top: torch.nn.attention is newer than the torch >= 2.2 that the
    # .pt2 format and the benchmarks (which import this module) need
    from torch.nn.attention import SDPBackend, sdpa_kernel

    batch = torch.export.Dim(BATCH_DIM, min=1, max=max_batch)
    # Attention is traced and decomposed under SDPA's math backend: on the CPU, torch.export
    # records the fused kernel's output strides, the ONNX exporter then decomposes SDPA into its
    # math form, whose output is laid out otherwise, and a reshape of the window attention that
    # was recorded as a view no longer is one ("Cannot view a tensor with shape ..."). ONNX gets
    # the same MatMul/Softmax graph either way; only the recorded strides change.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
        program = program.run_decompositions(
            {torch.ops.aten.adaptive_max_pool3d.default: adaptive_max_pool3d_by_gather})
        try:
            # weights inside the one file (external_data=False): one file to write atomically and to
            # ship; protobuf's 2 GB limit is far above our largest model (Swin-B, 0.35 GB)
            onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset,
                                             dynamic_shapes=({0: batch},), input_names=[INPUT_NAME],
                                             output_names=[OUTPUT_NAME], external_data=False, verbose=False)
        except torch.onnx.OnnxExporterError as e:
            op = unsupported_op(e)
            if op is None:
                raise RuntimeError(f"export: torch.onnx.export failed at opset {opset}: "
                                   f"{str(e).strip().splitlines()[0]}") from e
            raise RuntimeError(f"export: the operator {op} has no ONNX translation (opset {opset}), so this model "
                               f"cannot be exported to ONNX; the torch.export format (--format pt2) can hold it") from e
    proto = onnx_program.model_proto
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise RuntimeError(f"export: opset {opset} was asked for but the exporter wrote opset {written}; "
                           f"choose an opset between {MIN_OPSET} and the newest this torch supports")
    return proto.SerializeToString()


# --- ONNX Runtime ----------------------------------------------------------------------------------

class OnnxRuntimeModel:
    """An ONNX model in an ONNX Runtime CPU session, called like the module it was exported from:
    uint8 frames ``(B, 3, T, H, W)`` (torch) -> logits ``(B, K)`` (torch, float32)."""

    def __init__(self, model: Union[bytes, str, Path], *, threads: Optional[int] = None, spinning: bool = True) -> None:
        """``model``: serialised bytes or a ``.onnx`` path; ``threads``: intra-op threads (None: ONNX
        Runtime's choice), with one inter-op thread, as torch runs a single clip; ``spinning``:
        whether idle worker threads busy-wait for the next operator (ONNX Runtime's default).

        Raises:
            OnnxUnavailableError: onnxruntime is missing.
            RuntimeError: ONNX Runtime cannot load the model (the message gives its reason).
        """
        onnx_versions()
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        # ONNX Runtime's errors derive from Exception only; these are the ones a load raises
        except (state.Fail, state.InvalidArgument, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile,
                state.NotImplemented, state.RuntimeException) as e:
            where = "the exported model" if isinstance(model, bytes) else str(model)
            raise RuntimeError(f"export: onnxruntime cannot load {where}: {e}") from e
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, T, H, W)`` -> float32 logits ``(B, K)``."""
        (logits,) = self.session.run(None, {self.input_name: frames.contiguous().numpy()})
        return torch.from_numpy(logits)
