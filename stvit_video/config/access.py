"""Dotted config keys: read one, check a choice, make a config with some keys changed.

The one place a ``"GROUP.NAME"`` key is turned into an attribute path, so every package reads and
writes keys (and words its choice errors) the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from stvit_video.utils.errors import ConfigError

if TYPE_CHECKING:  # fvcore is not needed to read a key (the model builder imports this module)
    from fvcore.common.config import CfgNode

__all__ = ["check_choice", "get_key", "with_values"]


def get_key(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` (``"SOLVER.BASE_LR"``, ``"NUM_GPUS"``)."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise :class:`ConfigError` naming ``key``, ``value`` and the valid ``choices`` unless ``value`` is one."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(map(str, choices))}")


def with_values(cfg: "CfgNode", values: Mapping[str, Any]) -> "CfgNode":
    """A frozen copy of ``cfg`` with dotted keys set to ``values`` (``cfg`` itself is unchanged);
    ``cfg`` when there is nothing to change."""
    if not values:
        return cfg
    out = cfg.clone()
    out.defrost()
    for key, value in values.items():
        *groups, name = key.split(".")
        node = out
        for group in groups:
            node = node[group]
        setattr(node, name, value)
    out.freeze()
    return out
