"""Optimizer construction: parameter groups by role and weight decay."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "build_param_groups", "build_optimizer"]

# SOLVER.OPTIMIZING_METHOD choices
OPTIMIZERS = ("adamw", "sgd")


def build_param_groups(model: nn.Module, *, weight_decay: float, backbone_lr_mult: float = 1.0,
                       stgm_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Split trainable parameters into groups by role and decay.

    Roles: ``backbone`` (pretrained Swin parameters), ``stgm`` (the new STViT blocks and
    global centres, from ``model.semantic_parameter_names()``), ``head`` (classifier).
    No weight decay on 1-D parameters (norms, biases, layer scales) and on the names in
    ``model.no_weight_decay()`` (relative position bias tables); the global centres are
    decayed, as released.

    Returns:
        Non-empty groups, each with ``params``, ``param_names``, ``role``, ``lr_mult`` and
        ``weight_decay``; the LR scheduler multiplies the base LR by ``lr_mult``.
    """
    semantic = set(getattr(model, "semantic_parameter_names", lambda: set())())
    no_decay = set(getattr(model, "no_weight_decay", lambda: set())())
    mults = {"backbone": backbone_lr_mult, "stgm": stgm_lr_mult, "head": 1.0}
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        role = "head" if name.startswith("head.") else "stgm" if name in semantic else "backbone"
        decay = p.ndim > 1 and name not in no_decay
        group = groups.setdefault((role, decay), {
            "params": [], "param_names": [], "role": role, "lr_mult": mults[role],
            "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(p)
        group["param_names"].append(name)
    return list(groups.values())


def build_optimizer(cfg: Any, model: nn.Module, *, lr: float, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW or SGD (``SOLVER.OPTIMIZING_METHOD``) over :func:`build_param_groups`.

    Args:
        cfg: reads ``SOLVER.WEIGHT_DECAY``, ``SOLVER.MOMENTUM`` (SGD momentum / AdamW beta1)
            and the LR multipliers.
        model: the bare model (not DDP-wrapped), so parameter names match the roles.
        lr: the base LR actually used (``SOLVER.BASE_LR`` scaled to the global batch); each
            group starts at ``lr * lr_mult`` and the schedule keeps that ratio.
        fused: the fused CUDA kernels of AdamW/SGD (one launch per step instead of one per
            tensor); only for CUDA parameters.
    """
    groups = build_param_groups(model, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                                backbone_lr_mult=cfg.SOLVER.BACKBONE_LR_MULT,
                                stgm_lr_mult=cfg.SOLVER.STGM_LR_MULT)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    extra = {"fused": True} if fused else {}
    if cfg.SOLVER.OPTIMIZING_METHOD == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(cfg.SOLVER.MOMENTUM, 0.999), **extra)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.SOLVER.MOMENTUM, **extra)
