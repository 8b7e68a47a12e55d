"""Dotted config keys: read one, check a choice, make a config with some keys changed.

The one place a ``"GROUP.NAME"`` key is turned into an attribute path, so every package reads and
writes keys (and words its choice errors) the same way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from stvit_video.utils.errors import ConfigError

if TYPE_CHECKING:  # fvcore is not needed to read a key (the model builder imports this module)
    from fvcore.common.config import CfgNode

__all__ = ["check_choice", "check_choices", "get_key", "with_values"]


def _parent(cfg: Any, key: str) -> tuple[Any, str]:
    """The node holding dotted ``key``'s last part, and that part."""
    *groups, name = key.split(".")
    node = cfg
    for group in groups:
        node = node[group]
    return node, name


def get_key(cfg: Any, key: str) -> Any:
    """The value of dotted ``key`` (``"SOLVER.BASE_LR"``, ``"NUM_GPUS"``)."""
    node, name = _parent(cfg, key)
    return node[name]


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise :class:`ConfigError` naming ``key``, ``value`` and the valid ``choices`` unless ``value`` is one."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(map(str, choices))}")


def check_choices(cfg: Any, choices: Mapping[str, Iterable[Any]]) -> None:
    """:func:`check_choice` of every dotted key of ``choices`` (key -> its valid values), in order."""
    for key, valid in choices.items():
        check_choice(key, get_key(cfg, key), valid)


def with_values(cfg: "CfgNode", values: Mapping[str, Any]) -> "CfgNode":
    """A frozen copy of ``cfg`` with dotted keys set to ``values`` (``cfg`` itself is unchanged);
    ``cfg`` when there is nothing to change."""
    if not values:
        return cfg
    out = cfg.clone()
    out.defrost()
    for key, value in values.items():
        node, name = _parent(out, key)
        setattr(node, name, value)
    out.freeze()
    return out
