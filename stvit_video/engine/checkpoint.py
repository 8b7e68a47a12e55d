"""Our checkpoint format: the one writer of stvit_video's own files, and their reader for
training, resuming and inference (files are opened by :mod:`stvit_video.utils.checkpoint_file`,
which also checks the format version for :func:`stvit_video.models.weights.load_pretrained`).

Foreign layouts (official Video Swin, ImageNet Swin, released STViT) are converted by
:mod:`stvit_video.models.weights`; this module reads and writes only the format below.

Format (``format_version`` 1): a dict, readable with ``torch.load(weights_only=True)``
(tensors, str, int, float, bool, None, lists, tuples and dicts only)::

    format_version  int, 1; the first key
    model           state dict of the bare model (unwrapped from DDP ``.module`` and
                    torch.compile ``._orig_mod``)
    optimizer       ``optimizer.state_dict()``
    scaler          ``GradScaler.state_dict()``, or None (bf16 / fp32 training)
    epoch           completed epochs (0-based index of the epoch to run next)
    iter_in_epoch   loader iterations done in epoch ``epoch``; 0 at an epoch boundary
    global_step     optimizer steps since the start of training
    position        where the epoch stands in samples, or None (files of older versions):
                    ``samples_in_epoch`` (items of the epoch consumed by all ranks),
                    ``items_per_step``, ``items_per_epoch``, ``num_items`` (training videos),
                    ``world_size``, ``accum_steps``, ``batch_size`` (global), ``seed``,
                    ``repeated_samples`` (``DATA.NUM_REPEATED_SAMPLES``; absent before: 1)
    rng             :func:`capture_rng_state` of rank 0
    rng_ranks       :func:`capture_rng_state` of every rank, in rank order, or None
    cfg             the merged config, as YAML text
    class_names     list[str] in class-id order, or None
    test_transform  dict: mean, std (lists of 3 floats), short_side, crop, num_frames,
                    sampling_rate, target_fps (float; 0 = raw frames), num_clips, num_crops,
                    out_of_bound (absent in files of older versions)
    arch            dict: ``name`` (the model constructor) and ``kwargs`` (its keyword
                    arguments), enough to rebuild the model without the config
    best_metric     float, the best validation metric so far, or None
    extra           dict, for fields added later without a version bump

RNG: every rank's Python, NumPy, torch CPU and CUDA (its own device) states are gathered into
``rng_ranks`` when a checkpoint is written; on resume each rank restores its own
(:func:`restore_rng_state`), so a killed multi-process run resumes exactly. With another number
of ranks (or a file without ``rng_ranks``) rank 0 restores ``rng`` and the others re-seed
deterministically from the seed, their rank and the step.

Files in the checkpoint folder (:func:`save_training_checkpoint`)::

    checkpoint_epoch_00003.pyth                 after epoch 3 (1-based, as SlowFast)
    checkpoint_epoch_00004_sample_00032000.pyth during epoch 4, after 32000 of its samples
    last.pyth                                   a copy of the newest numbered file
    best.pyth                                   a copy of the file with the best metric

Mid-epoch files count samples (dataset items of all ranks), not iterations, so their order is
the training order even when a resumed run changed the batch size; ``_iter_`` names of older
versions still parse and order before the sample names of their epoch.

Every file is written atomically (:func:`save_checkpoint`): a killed process leaves the
previous file intact and at worst a ``*.tmp-*`` file, which nothing reads.
Only global rank 0 writes; every rank may read.
"""
from __future__ import annotations

import collections
import logging
import os
import random
import re
import shutil
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from stvit_video.models.conversion import key_problems
from stvit_video.utils.atomic import TMP_MARK, atomic_write
from stvit_video.utils.hashing import file_sha256  # re-exported: ckpt.file_sha256
from stvit_video.utils.checkpoint_file import FORMAT_VERSION, format_problem, load_error_reason, read_file
from stvit_video.utils.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION", "OPTIONAL_TRANSFORM_KEYS", "POSITION_KEYS", "STATE_KEYS", "TEST_TRANSFORM_KEYS",
    "CheckpointName", "InferenceCheckpoint",
    "ResumePoint", "build_checkpoint_state", "capture_rng_state", "checkpoint_name", "clean_temp_files",
    "file_sha256", "find_resumable", "list_checkpoints", "load_for_inference", "load_for_resume",
    "parse_checkpoint_name", "read_resume_state", "restore_rng_state", "save_checkpoint", "save_training_checkpoint",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
STATE_KEYS = ("format_version", "model", "optimizer", "scaler", "epoch", "iter_in_epoch", "global_step",
              "position", "rng", "rng_ranks", "cfg", "class_names", "test_transform", "arch", "best_metric", "extra")
RESUME_KEYS = ("model", "optimizer", "scaler", "epoch", "iter_in_epoch", "global_step", "best_metric")
INFERENCE_KEYS = ("model", "class_names", "test_transform", "arch", "cfg", "epoch")
TEST_TRANSFORM_KEYS = ("mean", "std", "short_side", "crop", "num_frames", "sampling_rate", "target_fps",
                       "num_clips", "num_crops", "out_of_bound")
# keys of the test transform that files of older versions may lack (the config's value is used)
OPTIONAL_TRANSFORM_KEYS = ("out_of_bound",)
POSITION_KEYS = ("samples_in_epoch", "items_per_step", "items_per_epoch", "num_items", "world_size", "accum_steps",
                 "batch_size", "seed", "repeated_samples")
LAST_NAME, BEST_NAME = "last.pyth", "best.pyth"
_NAME = re.compile(r"^checkpoint_epoch_(\d{5,})(?:_(iter|sample)_(\d{6,}))?\.pyth$")
_FOREIGN_HINT = ("if it holds weights in another layout, load it as pretrained weights with "
                 "TRAIN.CHECKPOINT_TYPE video_swin (official Video Swin / mmaction) or swin2d (ImageNet Swin)")


# ----------------------------------------------------------------------------------------- #
# Names
# ----------------------------------------------------------------------------------------- #
class CheckpointName(NamedTuple):
    """What a numbered file name says.

    Attributes:
        epoch: the 1-based epoch in the name.
        samples: samples (all ranks) done in that epoch for a mid-epoch file, None for an
            end-of-epoch file.
        unit: ``"sample"``; ``"iter"`` for the iteration counts older versions wrote.
    """

    epoch: int
    samples: Optional[int]
    unit: str = "sample"

    @property
    def progress(self) -> tuple[int, int, int]:
        """Orders files by training progress: ``(completed epochs, unit rank, count)``."""
        if self.samples is None:
            return (self.epoch, 0, 0)
        return (self.epoch - 1, 1 if self.unit == "sample" else 0, self.samples)


def checkpoint_name(epoch: int, samples: Optional[int] = None) -> str:
    """``checkpoint_epoch_{epoch:05d}.pyth`` after 1-based ``epoch``, or
    ``checkpoint_epoch_{epoch:05d}_sample_{samples:08d}.pyth`` during it, after ``samples``
    samples (all ranks)."""
    if epoch < 0 or (samples is not None and (epoch < 1 or samples < 1)):
        raise ValueError(f"checkpoint: no file name for epoch {epoch}, {samples} samples")
    if samples is None:
        return f"checkpoint_epoch_{epoch:05d}.pyth"
    return f"checkpoint_epoch_{epoch:05d}_sample_{samples:08d}.pyth"


def parse_checkpoint_name(name: str) -> Optional[CheckpointName]:
    """What a numbered file name says (a path's last part is used), else None."""
    match = _NAME.match(Path(name).name)
    if match is None:
        return None
    if match.group(2) is None:
        return CheckpointName(int(match.group(1)), None)
    return CheckpointName(int(match.group(1)), int(match.group(3)), match.group(2))


def _name_for_state(state: Mapping[str, Any]) -> str:
    epoch, it = int(state["epoch"]), int(state["iter_in_epoch"])
    position = state.get("position")
    samples = int(position["samples_in_epoch"]) if position else 0
    if it == 0 and samples == 0:
        return checkpoint_name(epoch)
    if not position:
        return f"checkpoint_epoch_{epoch + 1:05d}_iter_{it:06d}.pyth"
    return checkpoint_name(epoch + 1, samples)


def list_checkpoints(folder: PathLike) -> list[tuple[CheckpointName, Path]]:
    """Numbered checkpoint files in ``folder``, newest (most training progress) first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(parsed, path) for path in folder.iterdir()
             if path.is_file() and (parsed := parse_checkpoint_name(path.name)) is not None]
    return sorted(found, key=lambda item: item[0].progress, reverse=True)


# ----------------------------------------------------------------------------------------- #
# Small helpers
# ----------------------------------------------------------------------------------------- #
def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def capture_rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch CPU and (if initialised) CUDA generator states.

    Only the current CUDA device's state is read: a rank uses one device, and touching the
    others would create a context (and take memory) on every GPU of the node.

    Returns:
        ``{"python": [version, [625 ints], gauss_next], "numpy": {"name", "keys" (624 ints),
        "pos", "has_gauss", "cached_gaussian"}, "torch": uint8 tensor, "cuda": [uint8 tensor of
        the current device] or None, "cuda_device": its index or None}``, all readable with
        ``weights_only=True``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda, cuda_device = None, None
    # reading CUDA states would initialise CUDA in a process that never used it
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_device = torch.cuda.current_device()
        cuda = [torch.cuda.get_rng_state(cuda_device).clone()]
    return {
        "python": [int(version), [int(v) for v in internal], None if gauss is None else float(gauss)],
        "numpy": {"name": str(name), "keys": [int(k) for k in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "cuda_device": cuda_device,
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states of :func:`capture_rng_state` in this process; the CUDA state goes to
    the current device (the same rank's device, or its counterpart on another node)."""
    try:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        n = state["numpy"]
        np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint: the saved RNG state is malformed: {e}") from e
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        device = torch.cuda.current_device()
        if state.get("cuda_device") is not None:
            torch.cuda.set_rng_state(cuda[0], device)
        elif device < len(cuda):  # older files held every visible device's state
            torch.cuda.set_rng_state(cuda[device], device)


_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def _check_loadable(obj: Any, where: str) -> None:
    """Raise ValueError naming the first value ``torch.load(weights_only=True)`` would refuse."""
    kind = type(obj)
    if kind in (dict, collections.OrderedDict):
        for key, value in obj.items():
            if type(key) not in (str, int):
                raise ValueError(f"checkpoint: {where} has a key {key!r} of type {type(key).__name__}; use str or int")
            _check_loadable(value, f"{where}[{key!r}]")
    elif kind in (list, tuple):
        for index, value in enumerate(obj):
            _check_loadable(value, f"{where}[{index}]")
    elif not (kind in _PLAIN or isinstance(obj, torch.Tensor)):
        raise ValueError(f"checkpoint: {where} is a {kind.__module__}.{kind.__qualname__}, which "
                         f"torch.load(weights_only=True) cannot read; store plain Python values "
                         f"(str, int, float, bool, None, lists, dicts) or tensors")


def _check_state(state: Mapping[str, Any]) -> None:
    if not isinstance(state, dict) or next(iter(state), None) != "format_version":
        raise ValueError("checkpoint: the state must be a dict whose first key is 'format_version' "
                         "(build it with build_checkpoint_state)")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint: the state lacks keys {missing}")
    _check_loadable(state, "state")


# ----------------------------------------------------------------------------------------- #
# Writing
# ----------------------------------------------------------------------------------------- #
def build_checkpoint_state(*, model: nn.Module, optimizer: Optional[torch.optim.Optimizer],
                           scaler: Optional[Any], epoch: int, iter_in_epoch: int, global_step: int,
                           cfg_text: str, class_names: Optional[Sequence[str]], test_transform: Mapping[str, Any],
                           arch: Mapping[str, Any], best_metric: Optional[float],
                           extra: Optional[Mapping[str, Any]] = None,
                           rng: Optional[Mapping[str, Any]] = None, position: Optional[Mapping[str, int]] = None,
                           rng_ranks: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
    """The documented checkpoint dict (see the module docstring), ``format_version`` first.

    Args:
        model: possibly wrapped by DDP / torch.compile; its bare state dict is stored.
        optimizer, scaler: their ``state_dict()`` is stored (None -> None).
        epoch, iter_in_epoch, global_step: training progress (completed epochs, iterations
            done in the current epoch, optimizer steps).
        cfg_text: the merged config as YAML text.
        class_names: class names in class-id order, or None.
        test_transform: every key of :data:`TEST_TRANSFORM_KEYS`.
        arch: ``{"name": constructor name, "kwargs": {...}}``.
        best_metric: best validation metric so far, or None.
        extra: further plain values.
        rng: default :func:`capture_rng_state` of this process (rank 0).
        position: the keys of :data:`POSITION_KEYS` (where the epoch stands in samples), or None.
        rng_ranks: every rank's :func:`capture_rng_state`, in rank order (``rng_ranks[0]`` is
            also ``rng`` when ``rng`` is not given), or None.
    """
    missing = [k for k in TEST_TRANSFORM_KEYS if k not in test_transform]
    if missing:
        raise ValueError(f"checkpoint: test_transform lacks {missing} (needs {list(TEST_TRANSFORM_KEYS)})")
    if not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs"), Mapping):
        raise ValueError(f"checkpoint: arch must be {{'name': str, 'kwargs': dict}}, got keys {sorted(arch)}")
    if epoch < 0 or iter_in_epoch < 0 or global_step < 0:
        raise ValueError(f"checkpoint: negative progress (epoch {epoch}, iter {iter_in_epoch}, step {global_step})")
    if position is not None and sorted(position) != sorted(POSITION_KEYS):
        raise ValueError(f"checkpoint: position must have the keys {list(POSITION_KEYS)}, got {sorted(position)}")
    if rng is None:
        rng = rng_ranks[0] if rng_ranks else capture_rng_state()
    return {
        "format_version": FORMAT_VERSION,
        "model": unwrap_model(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": int(epoch),
        "iter_in_epoch": int(iter_in_epoch),
        "global_step": int(global_step),
        "position": None if position is None else {k: int(position[k]) for k in POSITION_KEYS},
        "rng": dict(rng),
        "rng_ranks": None if rng_ranks is None else [dict(r) for r in rng_ranks],
        "cfg": str(cfg_text),
        "class_names": None if class_names is None else [str(c) for c in class_names],
        "test_transform": dict(test_transform),
        "arch": {"name": arch["name"], "kwargs": dict(arch["kwargs"])},
        "best_metric": None if best_metric is None else float(best_metric),
        "extra": dict(extra or {}),
    }


def save_checkpoint(path: PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically. Call on global rank 0 only.

    The bytes go to ``<name>.tmp-<pid>-<random>`` in the same folder, are flushed and
    fsynced, then renamed onto ``path`` (``os.replace``) and the folder is fsynced. Readers
    see the old file or the new one, never a partial one; on any error the temporary file
    is removed and the old file is untouched.

    Raises:
        ValueError: ``state`` is not the documented dict or holds a value that
            ``torch.load(weights_only=True)`` would refuse (the message names it).
    """
    _check_state(state)
    return atomic_write(path, lambda f: torch.save(state, f))


def _copy_atomic(source: Path, target: Path) -> Path:
    with open(source, "rb") as src:
        return atomic_write(target, lambda f: shutil.copyfileobj(src, f, 1 << 20))


def clean_temp_files(folder: PathLike) -> list[Path]:
    """Remove ``*.pyth.tmp-*`` files left by a killed save; returns them. Rank 0, before saving."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and ".pyth" + TMP_MARK in p.name]
    for path in stale:
        path.unlink()
    return stale


def save_training_checkpoint(folder: PathLike, state: Mapping[str, Any], *, is_best: bool,
                             keep_mid_epoch: int = 1) -> Path:
    """Write the numbered file of ``state``, then ``last.pyth``, then ``best.pyth`` if ``is_best``.

    The name follows the progress in ``state``: at an epoch boundary the epoch file of ``epoch``
    (completed epochs), else the mid-epoch file of 1-based epoch ``epoch + 1`` and its samples.
    After all writes succeeded, older mid-epoch files are pruned: those older than the
    newest epoch file, and all but the newest ``keep_mid_epoch`` (the new one included).
    Epoch files are never deleted, nor files newer than the new one. Global rank 0 only.

    Returns:
        The path of the numbered file.
    """
    if keep_mid_epoch < 0:
        raise ValueError(f"checkpoint: keep_mid_epoch must be >= 0, got {keep_mid_epoch}")
    folder = Path(folder)
    path = save_checkpoint(folder / _name_for_state(state), state)
    _copy_atomic(path, folder / LAST_NAME)
    if is_best:
        _copy_atomic(path, folder / BEST_NAME)
    _prune_mid_epoch(folder, path, keep_mid_epoch)
    return path


def _prune_mid_epoch(folder: Path, new: Path, keep_mid_epoch: int) -> None:
    new_name = parse_checkpoint_name(new.name)
    files = list_checkpoints(folder)
    newest_epoch = max((n.progress for n, _ in files if n.samples is None), default=(-1, -1, -1))
    older_mids = [(n, p) for n, p in files if n.samples is not None and n.progress < new_name.progress]
    # the new file counts as one of the kept mid-epoch files; an epoch file supersedes them all
    kept = max(keep_mid_epoch - 1, 0) if new_name.samples is not None else 0
    for position, (name, path) in enumerate(older_mids):  # newest first
        if position >= kept or name.progress < newest_epoch:
            logger.info("checkpoint: removing superseded %s", path.name)
            path.unlink()


# ----------------------------------------------------------------------------------------- #
# Reading
# ----------------------------------------------------------------------------------------- #
def find_resumable(folder: PathLike, log: Optional[logging.Logger] = None) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest numbered checkpoint in ``folder`` that loads, with its state.

    Candidates are the numbered files, newest first by the (epoch, iter) in their names
    (``last.pyth`` and ``best.pyth`` are copies and are not needed). A file that cannot be
    read (zero bytes, truncated, garbage) or lacks the resume keys is skipped with a
    WARNING naming it and the reason.

    Returns:
        ``(path, state)``, or None when no file is usable.
    """
    log = log or logger
    for _, path in list_checkpoints(folder):
        try:
            state = read_file(path)
        except Exception as e:  # any failure to deserialise makes the file unusable; it is reported
            log.warning("checkpoint: skipping %s: it cannot be read, truncated or corrupt? (%s)", path,
                        load_error_reason(e))
            continue
        problem = format_problem(state, RESUME_KEYS)
        if problem is not None:
            log.warning("checkpoint: skipping %s: %s", path, problem)
            continue
        return path, state
    return None


def read_resume_state(path: PathLike) -> dict[str, Any]:
    """The state of ``path`` for resuming (the file another rank chose with :func:`find_resumable`).

    Raises:
        CheckpointError: it cannot be read or lacks the resume keys (naming the file and why).
    """
    path = Path(path)
    try:
        state = read_file(path)
    except Exception as e:  # any deserialisation failure: name the file and pass the reason on
        raise CheckpointError(f"checkpoint: {path} cannot be read on this rank ({load_error_reason(e)}); every rank "
                              "must see the checkpoint folder rank 0 writes (a shared file system)") from e
    problem = format_problem(state, RESUME_KEYS)
    if problem is not None:
        raise CheckpointError(f"checkpoint: {path} cannot be resumed from: {problem}")
    return state


def _load_model_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    target = unwrap_model(model)
    problems = key_problems(state_dict, {k: v.shape for k, v in target.state_dict().items()}, limit=10)
    if problems:
        raise CheckpointError(f"checkpoint: the weights in {source} do not fit the model: " + "; ".join(problems))
    target.load_state_dict(state_dict, strict=True)


class ResumePoint(NamedTuple):
    """Where a resumed run continues: run epoch ``epoch`` (0-based) from iteration ``iter_in_epoch``
    (loader iterations of the saving run). The sample position is read from the state's
    ``position`` by :func:`stvit_video.engine.resume.resume_samples`."""

    epoch: int
    iter_in_epoch: int
    global_step: int
    best_metric: Optional[float]


# optimizer hyperparameters a config sets: re-applied on resume, each change logged
_HYPERPARAMETERS = ("weight_decay", "lr_mult", "betas", "momentum", "eps", "dampening", "nesterov", "amsgrad",
                    "maximize", "role")


def _hyperparameter_changes(saved_groups: Sequence[Mapping[str, Any]], now_groups: Sequence[Mapping[str, Any]],
                            saved_of: Callable[[int, int], Optional[int]]) -> list[str]:
    """One line per (hyperparameter, saved value -> value now) with the number of parameters.

    ``saved_of(group_now, index_in_group)`` is the index of the saved group that held that
    parameter (None: not found)."""
    counts: dict[tuple[str, str, str], int] = collections.Counter()
    for g_now, group in enumerate(now_groups):
        for i in range(len(group["params"])):
            g_saved = saved_of(g_now, i)
            if g_saved is None:
                continue
            old = saved_groups[g_saved]
            for key in _HYPERPARAMETERS:
                if key in group and key in old and _plain(old[key]) != _plain(group[key]):
                    counts[(key, repr(_plain(old[key])), repr(_plain(group[key])))] += 1
    return [f"{key} {old} -> {new} for {n} parameter(s)" for (key, old, new), n in sorted(counts.items())]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any], source: str) -> list[str]:
    """Load ``saved`` into ``optimizer``, keeping the optimizer's own (the config's) hyperparameters.

    The per-parameter state (AdamW moments, step) is matched by parameter name when both sides
    name their parameters (our groups carry ``param_names``), so a config that regroups the
    parameters (another decay rule) still resumes; otherwise by position, group by group.
    ``load_state_dict`` then moves each state tensor to its parameter's device and dtype (fused
    AdamW's ``step`` included). Returns the hyperparameter changes, for the log.
    """
    now = optimizer.state_dict()
    now_groups, saved_groups = now["param_groups"], saved["param_groups"]
    if all("param_names" in g for g in (*now_groups, *saved_groups)):
        where = {name: (g, pid) for g, group in enumerate(saved_groups)
                 for pid, name in zip(group["params"], group["param_names"])}
        names_now = [name for group in now_groups for name in group["param_names"]]
        missing = [n for n in names_now if n not in where]
        extra = sorted(set(where) - set(names_now))
        if missing or extra:
            raise CheckpointError(
                f"checkpoint: the optimizer state in {source} does not cover the trainable parameters now "
                f"({len(missing)} without a saved state, e.g. {missing[:3]}; {len(extra)} saved but not trained now, "
                f"e.g. {extra[:3]}); resume with the same model and trainable parameters")
        state = {pid: saved["state"][where[name][1]] for group in now_groups
                 for pid, name in zip(group["params"], group["param_names"]) if where[name][1] in saved["state"]}
        changes = _hyperparameter_changes(saved_groups, now_groups,
                                          lambda g, i: where[now_groups[g]["param_names"][i]][0])
        remapped = {"state": state, "param_groups": now_groups}
    else:
        sizes_now = [len(g["params"]) for g in now_groups]
        sizes_saved = [len(g["params"]) for g in saved_groups]
        if sizes_now != sizes_saved:
            raise CheckpointError(
                f"checkpoint: the optimizer state in {source} has parameter groups of sizes {sizes_saved}, the "
                f"optimizer now {sizes_now}; resume with the same model, trainable parameters and LR multipliers")
        changes = _hyperparameter_changes(saved_groups, now_groups, lambda g, i: g)
        remapped = {"state": saved["state"], "param_groups": [
            {**group, "params": old["params"]} for group, old in zip(now_groups, saved_groups)]}
    try:
        optimizer.load_state_dict(remapped)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint: the optimizer state in {source} does not load: {e}") from e
    return changes


def load_for_resume(state: Mapping[str, Any], model: nn.Module, optimizer: Optional[torch.optim.Optimizer],
                    scaler: Optional[Any], *, source: str = "the checkpoint") -> ResumePoint:
    """Load model (strict), optimizer and scaler states from a :func:`find_resumable` state.

    The RNG state is not touched: each rank calls :func:`restore_rng_state` with its entry of
    ``state["rng_ranks"]``. The optimizer keeps the hyperparameters the config gives it now
    (weight decay, LR multipliers, betas / momentum); each one that differs from the checkpoint's
    is logged.

    Args:
        state: the checkpoint dict.
        model: the model, possibly wrapped (DDP / torch.compile), on its device.
        optimizer: built over the model's parameters on their device (fused AdamW on CUDA
            needs its state there).
        scaler: the GradScaler, or None. A scaler state saved without a scaler now (or the
            reverse, e.g. fp16 <-> bf16) is reported as a warning, not an error.
        source: how messages name the checkpoint (its path).

    Raises:
        CheckpointError: missing keys, weights that do not fit (names the keys), an optimizer
            state of other parameter groups.
    """
    problem = format_problem(state, RESUME_KEYS)
    if problem is not None:
        raise CheckpointError(f"checkpoint: {source} cannot be resumed from: {problem}")
    _load_model_strict(model, state["model"], source)
    if optimizer is not None:
        saved = state["optimizer"]
        if saved is None:
            raise CheckpointError(f"checkpoint: {source} has no optimizer state to resume from")
        for change in _load_optimizer(optimizer, saved, source):
            logger.warning("resume: the config changed the optimizer: %s (the checkpoint's value -> the config's; "
                           "the config's is used)", change)
    if scaler is not None:
        if state["scaler"] is None:
            logger.warning("checkpoint: %s has no GradScaler state; the scaler starts afresh", source)
        else:
            scaler.load_state_dict(state["scaler"])
    elif state["scaler"] is not None:
        logger.warning("checkpoint: %s has a GradScaler state but no scaler is used now; it is ignored", source)
    best = state["best_metric"]
    return ResumePoint(int(state["epoch"]), int(state["iter_in_epoch"]), int(state["global_step"]),
                       None if best is None else float(best))


@dataclass(frozen=True)
class InferenceCheckpoint:
    """What inference needs from a checkpoint, and nothing else.

    Attributes:
        path: the file.
        state_dict: the bare model weights.
        class_names: class names in class-id order, or None.
        test_transform: the keys of :data:`TEST_TRANSFORM_KEYS`.
        arch: ``{"name": constructor name, "kwargs": {...}}``.
        cfg_text: the merged config of the training run (YAML).
        epoch: completed epochs when saved.
        sha256: hex digest of the file, for reports.
        extra: the file's ``extra`` dict (e.g. ``val_list_sha256``: the list it was validated on).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    class_names: Optional[list[str]]
    test_transform: dict[str, Any]
    arch: dict[str, Any]
    cfg_text: str
    epoch: int
    sha256: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def load_for_inference(path: PathLike) -> InferenceCheckpoint:
    """Read one of our checkpoints for testing or prediction (on the CPU).

    Raises:
        CheckpointError: the file does not exist, cannot be read, is not our format (with
            the hint to load foreign layouts via ``TRAIN.CHECKPOINT_TYPE``), or lacks keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        state = read_file(path)
    except Exception as e:  # any deserialisation failure: name the file and pass the reason on
        raise CheckpointError(f"checkpoint: {path} cannot be read as a stvit_video checkpoint "
                              f"({load_error_reason(e)}); it may be truncated or another format; "
                              f"{_FOREIGN_HINT}") from e
    problem = format_problem(state, INFERENCE_KEYS)
    if problem is not None:
        hint = f"; {_FOREIGN_HINT}" if not isinstance(state, dict) or "format_version" not in state else ""
        raise CheckpointError(f"checkpoint: {path} is not a usable stvit_video checkpoint: {problem}{hint}")
    missing = [k for k in TEST_TRANSFORM_KEYS
               if k not in (state["test_transform"] or {}) and k not in OPTIONAL_TRANSFORM_KEYS]
    if missing:
        raise CheckpointError(f"checkpoint: {path} has a test_transform without {missing}")
    return InferenceCheckpoint(path=path, state_dict=dict(state["model"]), class_names=state["class_names"],
                               test_transform=dict(state["test_transform"]), arch=dict(state["arch"]),
                               cfg_text=state["cfg"], epoch=int(state["epoch"]), sha256=file_sha256(path),
                               extra=dict(state.get("extra") or {}))
