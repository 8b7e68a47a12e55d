"""Optimizer construction: parameter groups by role, LR multiplier and weight decay.

Two rules decide which parameters are decayed and which LR multiplier they get
(``SOLVER.PARAM_GROUP_RULE``):

``no_decay_1d`` (timm, the released STViT image code): no weight decay on 1-D parameters (norms,
    biases, layer scales) nor on the names in ``model.no_weight_decay()`` (relative-position
    bias tables); the global centres are decayed. LR multiplier by role.
``video_swin`` (the official Video Swin Kinetics configs, as mmcv reads their
    ``paramwise_cfg.custom_keys``): mmcv applies only the *longest* key a name contains, so
    ``relative_position_bias_table`` (and ``absolute_pos_embed``) get weight decay 0 *and* LR
    multiplier 1.0 (the ``backbone`` key's 0.1 never reaches them), while every other backbone
    parameter, norms and biases included, is decayed (``backbone`` wins over ``norm``), as is
    the classifier. LR multiplier by role otherwise.

Roles: ``backbone`` (pretrained Swin parameters, ``SOLVER.BACKBONE_LR_MULT``), ``stgm`` (the
new STViT blocks and global centres, ``SOLVER.STGM_LR_MULT``: a separate group so the
backbone's fine-tuning multiplier never slows freshly initialised layers), ``head``
(classifier, 1.0) and, under ``video_swin``, ``position_bias`` (1.0, no decay).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "PARAM_GROUP_RULES", "build_param_groups", "build_optimizer"]

# SOLVER.OPTIMIZING_METHOD choices
OPTIMIZERS = ("adamw", "sgd")
# SOLVER.PARAM_GROUP_RULE choices
PARAM_GROUP_RULES = ("no_decay_1d", "video_swin")
# names the official configs exempt from decay (mmcv custom_keys with decay_mult 0, lr_mult 1)
_POSITION_KEYS = ("relative_position_bias_table", "absolute_pos_embed")


def _role_and_decay(name: str, p: nn.Parameter, *, rule: str, semantic: set[str],
                    no_decay: set[str]) -> tuple[str, bool]:
    role = "head" if name.startswith("head.") else "stgm" if name in semantic else "backbone"
    if rule == "video_swin":
        if any(key in name for key in _POSITION_KEYS):
            return "position_bias", False
        return role, True
    return role, p.ndim > 1 and name not in no_decay


def build_param_groups(model: nn.Module, *, weight_decay: float, backbone_lr_mult: float = 1.0,
                       stgm_lr_mult: float = 1.0, rule: str = "no_decay_1d") -> list[dict[str, Any]]:
    """Split the trainable parameters into groups by role and decay (see the module docstring).

    Args:
        model: the bare model; ``model.semantic_parameter_names()`` names the STViT blocks and
            ``model.no_weight_decay()`` the bias tables (both optional).
        weight_decay: of the decayed groups.
        backbone_lr_mult, stgm_lr_mult: LR multipliers of those roles.
        rule: one of :data:`PARAM_GROUP_RULES`.

    Returns:
        Non-empty groups, each with ``params``, ``param_names``, ``role``, ``lr_mult`` and
        ``weight_decay``; the LR scheduler multiplies the base LR by ``lr_mult``.
    """
    if rule not in PARAM_GROUP_RULES:
        raise ValueError(f"optimizer: unknown parameter group rule {rule!r}; use one of {PARAM_GROUP_RULES}")
    semantic = set(getattr(model, "semantic_parameter_names", lambda: set())())
    no_decay = set(getattr(model, "no_weight_decay", lambda: set())())
    mults = {"backbone": backbone_lr_mult, "stgm": stgm_lr_mult, "head": 1.0, "position_bias": 1.0}
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        role, decay = _role_and_decay(name, p, rule=rule, semantic=semantic, no_decay=no_decay)
        group = groups.setdefault((role, decay), {
            "params": [], "param_names": [], "role": role, "lr_mult": mults[role],
            "weight_decay": weight_decay if decay else 0.0})
        group["params"].append(p)
        group["param_names"].append(name)
    return list(groups.values())


def build_optimizer(cfg: Any, model: nn.Module, *, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD (``SOLVER.OPTIMIZING_METHOD``) over :func:`build_param_groups`.

    Build it after the model is on its device: on CUDA the fused kernels are used (one launch
    per step instead of one per tensor), and a state loaded later lands where the parameters
    are (fused AdamW keeps its ``step`` on the device).

    Args:
        cfg: reads ``SOLVER.WEIGHT_DECAY``, ``SOLVER.MOMENTUM`` (SGD momentum / AdamW beta1),
            ``SOLVER.PARAM_GROUP_RULE`` and the LR multipliers.
        model: the bare model (not DDP-wrapped), so parameter names match the roles.
        lr: the base LR actually used (``SOLVER.BASE_LR`` scaled to the global batch); each
            group starts at ``lr * lr_mult`` and the schedule keeps that ratio.
    """
    groups = build_param_groups(model, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
                                backbone_lr_mult=cfg.SOLVER.BACKBONE_LR_MULT,
                                stgm_lr_mult=cfg.SOLVER.STGM_LR_MULT, rule=cfg.SOLVER.PARAM_GROUP_RULE)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    devices = {p.device.type for g in groups for p in g["params"]}
    if len(devices) > 1:
        raise ValueError(f"optimizer: the parameters are on several device types {sorted(devices)}; "
                         "move the model to its device before building the optimizer")
    extra = {"fused": True} if devices == {"cuda"} else {}
    if cfg.SOLVER.OPTIMIZING_METHOD == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(cfg.SOLVER.MOMENTUM, 0.999), **extra)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.SOLVER.MOMENTUM, **extra)
