"""Process groups on PyTorch's own machinery: torchrun (``env://``) or a SlowFast-style spawn.

Two ways to start R = NUM_SHARDS x NUM_GPUS processes:

- ``torchrun --nnodes N --nproc-per-node G ...``: every process finds ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its environment
  (:func:`torchrun_env`) and calls :func:`init_distributed` with the ``env://`` method.
- ``NUM_GPUS G`` with ``--num_shards N --shard_id i --init_method tcp://host:port`` (SlowFast
  style): :func:`spawn` starts G processes on node i; global rank = ``i * G + local_rank``.

:func:`init_distributed` ends with a start-up check (:func:`startup_check`): an all-reduce of
ones that must return R on every rank within the timeout. A rendezvous that hangs (a node
not started, a port blocked, a wrong world size) becomes a ``RuntimeError`` naming the rank,
the world size and the init method instead of a silent hang.

Collectives (:func:`all_reduce_sum`, :func:`all_gather_object`, :func:`broadcast_object`,
:func:`barrier`) are no-ops in a single process. Every rank must call them in the same
order: a collective called on one rank only (say inside ``if is_main():``) waits forever for
the others. Log on rank 0 only values that were already reduced.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

logger = logging.getLogger(__name__)

__all__ = ["DistContext", "all_gather_object", "all_reduce_sum", "barrier", "broadcast_object", "check_replicas_equal",
           "destroy", "free_port", "init_distributed", "main_rank_work", "raise_if_any_failed", "spawn",
           "startup_check", "torchrun_env"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
BACKENDS = ("auto", "nccl", "gloo")
DEVICES = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of processes (1: no process group).
        local_rank: rank on this node; the CUDA device index.
        device: ``cuda:<local_rank>`` or ``cpu``.
        backend: ``"nccl"`` / ``"gloo"``, or None without a process group.
        init_method: the rendezvous URL, or None without a process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None
    init_method: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def torchrun_env() -> bool:
    """Whether ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are set (torchrun / torch.distributed.run)."""
    return all(name in os.environ for name in _TORCHRUN_VARS)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (another process may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"distributed: environment variable {name}={value!r} is not an integer") from e


def _describe(rank: int, world_size: int, init_method: str, backend: str, timeout_s: float) -> str:
    where = init_method
    if init_method.startswith("env://"):
        where += (f" (MASTER_ADDR={os.environ.get('MASTER_ADDR', '<unset>')}, "
                  f"MASTER_PORT={os.environ.get('MASTER_PORT', '<unset>')})")
    return (f"rank {rank} of world size {world_size}, init method {where}, backend {backend}, "
            f"timeout {timeout_s:g} s")


def _sentence(e: BaseException) -> str:
    """The first line of torch's message (the rest is a C++ backtrace), ending with a full stop."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return lines[0].rstrip(".!") + "."


def _hint(world_size: int) -> str:
    return (f"Check that every node runs the same command with the same init method, that the master "
            f"address is reachable from every node and its port is open (MASTER_ADDR/MASTER_PORT for "
            f"env://, the host:port of --init_method for tcp://), and that NUM_SHARDS x NUM_GPUS = "
            f"world size = {world_size} processes were started (one --shard_id per node).")


def init_distributed(*, backend: str = "auto", init_method: Optional[str] = None,
                     world_size: Optional[int] = None, rank: Optional[int] = None,
                     local_rank: Optional[int] = None, device: str = "auto", timeout_s: float = 1800.0,
                     check: bool = True) -> DistContext:
    """Join the process group (when ``world_size > 1``) and pick this process's device.

    Args:
        backend: ``"nccl"`` (CUDA), ``"gloo"`` (CPU) or ``"auto"`` (nccl on CUDA, else gloo).
        init_method: rendezvous URL (``"env://"``, ``"tcp://host:port"``, ``"file:///path"``);
            default ``"env://"``.
        world_size, rank, local_rank: default from ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` when
            :func:`torchrun_env`, else a single process (1, 0, 0).
        device: ``"cuda"``, ``"cpu"`` or ``"auto"`` (CUDA when available). On CUDA the current
            device is set to ``local_rank``.
        timeout_s: limit of the rendezvous, of the start-up check and of every later collective.
        check: run :func:`startup_check` after joining.

    Returns:
        The :class:`DistContext`; ``backend`` and ``init_method`` are None when
        ``world_size == 1`` (no process group is created).

    Raises:
        RuntimeError: the rendezvous or the start-up check failed or timed out; the message
            names the rank, the world size and the init method, with what to check.
    """
    if backend not in BACKENDS:
        raise ValueError(f"distributed: unknown backend {backend!r}; use one of {BACKENDS}")
    if device not in DEVICES:
        raise ValueError(f"distributed: unknown device {device!r}; use one of {DEVICES}")
    env = torchrun_env()
    world_size = world_size if world_size is not None else (_env_int("WORLD_SIZE") if env else 1)
    rank = rank if rank is not None else (_env_int("RANK") if env else 0)
    local_rank = local_rank if local_rank is not None else (_env_int("LOCAL_RANK") if env else 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"distributed: rank {rank} outside [0, world size {world_size})")

    use_cuda = device == "cuda" or (device == "auto" and backend != "gloo" and torch.cuda.is_available())
    if use_cuda:
        count = torch.cuda.device_count()
        if not 0 <= local_rank < count:
            raise RuntimeError(f"distributed: local rank {local_rank} has no CUDA device ({count} visible); "
                               f"start at most {count} processes per node (NUM_GPUS)")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size == 1:
        return DistContext(rank=rank, world_size=1, local_rank=local_rank, device=dev)

    backend = ("nccl" if use_cuda else "gloo") if backend == "auto" else backend
    if backend == "nccl" and not use_cuda:
        raise ValueError("distributed: backend nccl needs CUDA; use gloo on CPU")
    init_method = init_method or "env://"
    if _initialized():
        raise RuntimeError("distributed: a process group already exists; call destroy() before init_distributed()")
    where = _describe(rank, world_size, init_method, backend, timeout_s)
    try:
        dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size, rank=rank,
                                timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError, OSError) as e:  # DistError, DistStoreError and friends are RuntimeErrors
        raise RuntimeError(f"distributed: rendezvous failed ({where}): {_sentence(e)} {_hint(world_size)}") from e
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend,
                      init_method=init_method)
    if check:
        startup_check(ctx, timeout_s=timeout_s)
    return ctx


def startup_check(ctx: DistContext, *, timeout_s: float) -> None:
    """All-reduce a tensor of ones; every rank must see ``world_size`` within ``timeout_s``.

    Every rank calls it right after joining. A rank that never arrives (a node not started,
    a process stuck before the check) makes the others fail here with a clear message instead
    of hanging in the first training step.
    """
    if not ctx.distributed:
        return
    where = _describe(ctx.rank, ctx.world_size, ctx.init_method or "?", ctx.backend or "?", timeout_s)
    ones = torch.ones(1, device=ctx.device)
    try:
        work = dist.all_reduce(ones, async_op=True)
        work.wait(timeout=datetime.timedelta(seconds=timeout_s))
    except RuntimeError as e:
        raise RuntimeError(f"distributed: start-up all-reduce did not complete ({where}): {_sentence(e)} "
                           f"{_hint(ctx.world_size)}") from e
    total = int(ones.item())
    if total != ctx.world_size:
        raise RuntimeError(f"distributed: start-up all-reduce summed to {total}, expected the world size "
                           f"({where}); the ranks disagree on the process group. {_hint(ctx.world_size)}")


def destroy(*, wait_for_all: bool = False) -> None:
    """Leave the process group (no-op without one); call on every rank at the end.

    Args:
        wait_for_all: meet the other ranks first (a barrier). Pass it on the normal path only:
            after an error the other ranks may never arrive. Without it, a rank that finishes
            first tears its connections down while the others still talk to it.
    """
    if not _initialized():
        return
    if wait_for_all:
        try:
            dist.barrier()
        except RuntimeError as e:  # the work is done; a peer that left early is no reason to fail it
            logger.warning("distributed: the final barrier failed (%s); leaving the group anyway", e)
    # a model wrapped in DDP often outlives the job in a reference cycle; freeing it now, while
    # the group still exists, keeps the backend's threads from being torn down at interpreter exit
    gc.collect()
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------- #
# Collectives: every rank calls them, in the same order; no-ops in a single process
# ----------------------------------------------------------------------------------------- #
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; returns it.

    A CPU tensor under NCCL is reduced through a copy on this rank's GPU.
    """
    if not _initialized() or dist.get_world_size() == 1:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu)
        tensor.copy_(on_gpu)
        return tensor
    dist.all_reduce(tensor)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """The picklable ``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if not _initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (the others' ``obj`` is ignored)."""
    if not _initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every rank arrives (no-op in a single process)."""
    if _initialized():
        dist.barrier()


def raise_if_any_failed(error: Optional[BaseException]) -> None:
    """Every rank calls it with its own error or None; if any rank failed, every rank raises
    (the failing ones their own error, the others the first failure, naming its rank), so no
    rank walks on into a collective that the failed one never reaches."""
    failures = all_gather_object(None if error is None else (type(error), str(error)))
    if error is not None:
        raise error
    for rank, failure in enumerate(failures):
        if failure is not None:
            kind, text = failure
            raise kind(f"rank {rank}: {text}")


@contextlib.contextmanager
def main_rank_work(what: str, timeout_s: Optional[float]) -> Iterator[None]:
    """Time work that only the main rank does while the others wait in their next collective
    (a checkpoint write, the report, the built-in data). The others give up after the
    collective timeout (``DIST.TIMEOUT_S``), so a step that takes over half of it is a warning
    naming the key, before it becomes a timeout on a bigger model or a slower disk."""
    start = time.perf_counter()
    yield
    took = time.perf_counter() - start
    if _initialized() and dist.get_world_size() > 1 and timeout_s and took > timeout_s / 2:
        logger.warning("distributed: %s took %.0f s on rank 0 while the other ranks waited; that is over half of "
                       "DIST.TIMEOUT_S = %.0f s, after which they fail: raise DIST.TIMEOUT_S", what, took, timeout_s)


# ----------------------------------------------------------------------------------------- #
# SlowFast-style launch
# ----------------------------------------------------------------------------------------- #
def _spawned(local_rank: int, fn: Callable[..., Any], args: Sequence[Any], nprocs: int, shard_id: int,
             world_size: int, init_method: str, backend: str, device: str, timeout_s: float) -> None:
    ctx = init_distributed(backend=backend, init_method=init_method, world_size=world_size,
                           rank=shard_id * nprocs + local_rank, local_rank=local_rank, device=device,
                           timeout_s=timeout_s)
    try:
        fn(ctx, *args)
    except BaseException:
        destroy()
        raise
    destroy(wait_for_all=True)


def spawn(fn: Callable[..., Any], args: Sequence[Any] = (), *, nprocs: int, num_shards: int = 1,
          shard_id: int = 0, init_method: Optional[str] = None, backend: str = "auto", device: str = "auto",
          timeout_s: float = 1800.0) -> None:
    """Run ``fn(ctx, *args)`` in ``nprocs`` processes on this node, SlowFast style.

    Process ``local_rank`` joins as global rank ``shard_id * nprocs + local_rank`` of
    ``nprocs * num_shards`` via :func:`init_distributed`, calls ``fn`` with its
    :class:`DistContext`, and leaves the group. With one process in total ``fn`` runs here,
    without a process group. An exception in any process is raised here
    (``torch.multiprocessing.ProcessRaisedException``) once the processes have exited.

    Args:
        fn: a module-level function (it is pickled by name into the new processes).
        args: further arguments of ``fn`` (picklable).
        nprocs: processes on this node (NUM_GPUS; at least 1).
        num_shards, shard_id: number of nodes and this node's index.
        init_method: ``tcp://host:port`` of node 0, the same on every node; default for one
            node: ``tcp://127.0.0.1:<a free port>``.
        backend, device, timeout_s: as in :func:`init_distributed`.
    """
    if nprocs < 1 or num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"distributed: need nprocs >= 1 and 0 <= shard_id < num_shards "
                         f"(nprocs {nprocs}, shard_id {shard_id}, num_shards {num_shards})")
    world_size = nprocs * num_shards
    if world_size == 1:
        ctx = init_distributed(backend=backend, world_size=1, rank=0, local_rank=0, device=device)
        fn(ctx, *args)
        return
    if init_method is None:
        if num_shards > 1:
            raise ValueError(f"distributed: {num_shards} nodes need --init_method tcp://<node 0 address>:<port>, "
                             f"the same on every node")
        init_method = f"tcp://127.0.0.1:{free_port()}"
    mp.spawn(_spawned, args=(fn, tuple(args), nprocs, shard_id, world_size, init_method, backend, device,
                             timeout_s), nprocs=nprocs, join=True)


def check_replicas_equal(module: torch.nn.Module) -> bool:
    """Every rank's parameters equal rank 0's (checked by a float64 checksum per tensor).

    Every rank calls it (one all_gather). DDP keeps replicas equal by construction; this makes a
    broken invariant (a parameter outside DDP, a rank-dependent update) an error, not a silent
    divergence. Returns True on one process.

    Raises:
        RuntimeError: naming the first parameter that differs and the ranks.
    """
    if not _initialized():
        return True
    names, params = zip(*module.named_parameters())
    sums = torch.stack([p.detach().double().sum() for p in params]).cpu()
    gathered = all_gather_object(sums)
    for rank, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            first = names[int((other != gathered[0]).nonzero()[0])]
            raise RuntimeError(f"distributed: the weights of rank {rank} differ from rank 0's (first: {first})")
    return True
