"""Process groups on CPU with gloo: a real 2-process run of the collectives (and of the
meters, see ``two_rank_run``), the start-up check, and a rendezvous that cannot complete.

The 2-process run is started once per session (``two_rank_results`` of tests/helpers/two_ranks.py,
given to the tests by the ``two_rank_run`` fixture of tests/engine/conftest.py).
"""
import time

import pytest
import torch

from stvit_video.engine import distributed as D


def test_spawn_assigns_ranks_and_the_collectives_combine_both(two_rank_run):
    for rank, result in enumerate(two_rank_run):
        r, world, local, device, backend, init = result["ctx"]
        assert (r, world, local, device, backend) == (rank, 2, rank, "cpu", "gloo")
        assert init.startswith("tcp://127.0.0.1:")
        assert result["sum"] == [3.0, 20.0]
        assert result["gathered"] == [{"rank": 0, "rows": [0]}, {"rank": 1, "rows": [1, 1]}]
        assert result["broadcast"] == "from rank 1"


def test_collectives_are_no_ops_in_one_process():
    assert not torch.distributed.is_initialized()
    t = torch.tensor([2.0])
    assert D.all_reduce_sum(t) is t and t.item() == 2.0
    assert D.all_gather_object({"a": 1}) == [{"a": 1}]
    assert D.broadcast_object("x") == "x"
    D.barrier()
    D.destroy()


def test_one_process_needs_no_process_group(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    assert D.torchrun_env()
    ctx = D.init_distributed(device="cpu")
    assert ctx == D.DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert not ctx.distributed and ctx.is_main and not torch.distributed.is_initialized()
    seen = []
    D.spawn(lambda c, x: seen.append((c.world_size, x)), (7,), nprocs=1, device="cpu")  # runs here
    assert seen == [(1, 7)]


def test_bad_launch_arguments_are_named():
    with pytest.raises(ValueError, match="2 nodes need --init_method tcp://"):
        D.spawn(print, nprocs=2, num_shards=2, shard_id=0)
    with pytest.raises(ValueError, match="shard_id 2"):
        D.spawn(print, nprocs=1, num_shards=2, shard_id=2, init_method="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="rank 2 outside"):
        D.init_distributed(world_size=2, rank=2, device="cpu")
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        D.init_distributed(world_size=2, rank=0, backend="nccl", device="cpu")


def test_a_rendezvous_that_cannot_complete_fails_with_a_clear_message_within_the_timeout(monkeypatch):
    """World size 2 but only rank 0 starts: the store times out, the message says what to check."""
    port = D.free_port()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    start = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        D.init_distributed(backend="gloo", init_method="env://", world_size=2, rank=0, device="cpu", timeout_s=3)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert f"rank 0 of world size 2, init method env:// (MASTER_ADDR=127.0.0.1, MASTER_PORT={port})" in message
    assert "NUM_SHARDS x NUM_GPUS = world size = 2" in message and "reachable" in message
    assert 2.5 < elapsed < 10, elapsed
    assert not torch.distributed.is_initialized()


def test_startup_check_turns_a_missing_rank_into_a_clear_error(two_rank_run):
    """At the end of the shared run rank 1 sleeps while rank 0 runs the check with a 1.5 s timeout."""
    late = two_rank_run[0]["late_check"]
    init = two_rank_run[0]["ctx"][5]
    assert f"start-up all-reduce did not complete (rank 0 of world size 2, init method {init}, backend gloo, " \
        f"timeout 1.5 s)" in late["message"]
    assert "same command" in late["message"] and "NUM_SHARDS x NUM_GPUS = world size = 2" in late["message"]
    assert 1.4 < late["elapsed"] < 2.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_device_is_the_local_rank_gpu():
    ctx = D.init_distributed(world_size=1, rank=0, local_rank=0)
    assert ctx.device == torch.device("cuda", 0) and torch.cuda.current_device() == 0 and ctx.backend is None


def test_main_rank_work_longer_than_half_the_timeout_is_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(D, "_initialized", lambda: True)
    monkeypatch.setattr(D.dist, "get_world_size", lambda: 2)
    clock = iter([100.0, 1100.0])
    monkeypatch.setattr(D.time, "perf_counter", lambda: next(clock))
    with caplog.at_level("WARNING"):
        with D.main_rank_work("writing a checkpoint", 1800.0):
            pass
    assert "writing a checkpoint took 1000 s on rank 0" in caplog.text and "DIST.TIMEOUT_S = 1800 s" in caplog.text
