"""Load a configuration: defaults -> YAML (with ``_BASE_``) -> ``KEY VALUE`` overrides.

Every key of a YAML file or an override is checked against the defaults before merging, so
a misspelled key fails with the closest valid names instead of fvcore's bare ``KeyError``.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fvcore.common.config import BASE_KEY, CfgNode

from stvit_video.config.defaults import get_cfg_defaults
from stvit_video.config.validate import validate_config
from stvit_video.utils.errors import ConfigError

# Name of the config a bare directory name resolves to (``--cfg kinetics400``).
_DIR_DEFAULT_NAME = "default.yaml"


def configs_root() -> Path:
    """Folder of the shipped YAML configs (``$STVIT_CONFIG_DIR`` overrides it).

    An installed wheel carries them as package data in ``stvit_video/configs`` (setup.py
    maps the repository's top-level ``configs/`` there); a source checkout or an editable
    install reads the repository's ``configs/`` directly.
    """
    env = os.environ.get("STVIT_CONFIG_DIR")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parents[1]
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def _config_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    if rel.name == Path(_DIR_DEFAULT_NAME).stem:
        rel = rel.parent
    return rel.as_posix()


def available_configs(root: Path | None = None) -> dict[str, Path]:
    """Map every short config name to its file.

    ``configs/kinetics400/swin_t_32x2.yaml`` is named ``kinetics400/swin_t_32x2``, and
    ``configs/kinetics400/default.yaml`` is named ``kinetics400``. Files whose name starts
    with ``_`` are bases for ``_BASE_`` and are not listed.
    """
    root = configs_root() if root is None else root
    if not root.is_dir():
        return {}
    # files starting with "_" are shared bases, only meant for _BASE_
    return {_config_name(p, root): p for p in sorted(root.rglob("*.yaml")) if not p.name.startswith("_")}


def describe_config(path: Path) -> str:
    """First comment line of a YAML file (its one-line description), or ''."""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
        if stripped:
            break
    return ""


def resolve_config(name_or_path: str | os.PathLike) -> Path:
    """Turn ``--cfg``'s argument into a YAML file.

    Accepts an existing file path, a short name from :func:`available_configs`
    (``kinetics400``, ``kinetics400/swin_t_32x2``), or a file stem that is unique
    under ``configs/`` (``swin_t_32x2``).

    Raises:
        ConfigError: nothing matches, or a stem matches several files.
    """
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    if path.is_file():
        return path
    configs = available_configs()
    key = raw[:-5] if raw.endswith(".yaml") else raw
    if key in configs:
        return configs[key]
    by_stem = [p for n, p in configs.items() if n.rsplit("/", 1)[-1] == key]
    if len(by_stem) == 1:
        return by_stem[0]
    if len(by_stem) > 1:
        names = ", ".join(sorted(_config_name(p, configs_root()) for p in by_stem))
        raise ConfigError(f"--cfg {raw!r} is ambiguous; use one of: {names}")
    close = difflib.get_close_matches(key, list(configs), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"--cfg {raw!r} is neither a file nor a config name under {configs_root()}.{hint} "
        "Run with --list-configs to see the names."
    )


def _all_keys(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, Mapping):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _closest(key: str, candidates: list[str], cutoff: float = 0.6, margin: float = 0.1) -> list[str]:
    """Up to 3 candidates scoring within ``margin`` of the best match (best first)."""
    scored = sorted(((difflib.SequenceMatcher(None, key, c).ratio(), c) for c in candidates), reverse=True)
    scored = [(r, c) for r, c in scored if r >= cutoff]
    return [c for r, c in scored[:3] if r >= scored[0][0] - margin] if scored else []


def unknown_key_error(key: str, defaults: CfgNode, source: str) -> ConfigError:
    """Build the error for a key that the defaults lack, with the closest valid keys."""
    candidates = [k for k in _all_keys(defaults) if not isinstance(_lookup(defaults, k), Mapping)]
    close = _closest(key, candidates)
    if not close:  # a misspelled group: suggest within the right leaf name
        leaf = key.rsplit(".", 1)[-1]
        close = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf][:3]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key} in {source}{hint}")


def _check_keys(node: Mapping[str, Any], defaults: CfgNode, source: str, prefix: str = "") -> None:
    for k, v in node.items():
        full = f"{prefix}{k}"
        if k == BASE_KEY and not prefix:
            continue
        target = defaults
        for part in full.split("."):
            if not isinstance(target, Mapping) or part not in target:
                # name the full leaf key the user wrote, so the suggestion can be a leaf too
                leaves = _all_keys(v, full + ".") if isinstance(v, Mapping) else []
                leaf = next((k for k in leaves if not isinstance(_lookup(v, k[len(full) + 1:]), Mapping)), full)
                raise unknown_key_error(leaf, defaults, source)
            target = target[part]
        if isinstance(v, Mapping):
            if not isinstance(target, Mapping):
                raise ConfigError(f"config key {full} in {source} is a value, not a group")
            _check_keys(v, defaults, source, full + ".")


def merge_yaml(cfg: CfgNode, path: str | os.PathLike) -> CfgNode:
    """Merge a YAML file (and its ``_BASE_`` chain) into ``cfg`` after checking its keys."""
    try:
        loaded = CfgNode.load_yaml_with_base(str(path), allow_unsafe=False)
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path}: {e}") from e
    if loaded is None:
        return cfg
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(loaded).__name__}")
    loaded = dict(loaded)
    loaded.pop(BASE_KEY, None)
    _check_keys(loaded, cfg, f"config file {path}")
    try:
        cfg.merge_from_other_cfg(CfgNode(loaded))
    except (ValueError, KeyError, AssertionError) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    return cfg


def merge_overrides(cfg: CfgNode, opts: Sequence[str]) -> CfgNode:
    """Merge command-line ``KEY VALUE`` pairs into ``cfg`` after checking each key."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(
            f"overrides must be KEY VALUE pairs; got an odd number of items: {' '.join(opts)}"
        )
    for key in opts[0::2]:
        _check_keys(_nest(key), cfg, "the command-line overrides")
    try:
        cfg.merge_from_list(opts)
    except (ValueError, KeyError, AssertionError) as e:
        raise ConfigError(f"command-line overrides: {e}") from e
    return cfg


def _lookup(node: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        node = node[part]
    return node


def _nest(dotted: str) -> dict:
    head, _, rest = dotted.partition(".")
    return {head: _nest(rest) if rest else None}


def load_config(
    cfg_file: str | os.PathLike | None = None,
    opts: Iterable[str] = (),
    validate: bool = True,
) -> CfgNode:
    """Build the configuration of a run.

    Args:
        cfg_file: YAML path or short config name (see :func:`resolve_config`); None = defaults.
        opts: flat ``[KEY, VALUE, KEY, VALUE, ...]`` overrides applied last.
        validate: run the generic checks of :func:`validate_config` on the result (the
            engine's ``load_run_config`` adds the model, data and solver checks).

    Returns:
        The merged config, frozen.
    """
    cfg = get_cfg_defaults()
    if cfg_file is not None:
        merge_yaml(cfg, resolve_config(cfg_file))
    merge_overrides(cfg, list(opts))
    if validate:
        validate_config(cfg)
    cfg.freeze()
    return cfg
