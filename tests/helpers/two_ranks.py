"""One real 2-process gloo run of the collectives and of the meters, shared by
tests/engine/test_distributed.py and tests/engine/test_meters.py.

:func:`two_rank_results` starts the run once per session and keeps its results (each new
process imports torch: seconds); the ``two_rank_run`` fixture of tests/engine/conftest.py
hands them to the tests. :func:`meter_data` and :func:`feed_meters` give the same meter inputs
on every process, so a test can compare the two ranks' synced numbers with one process's.
"""
import json
import time

import torch

from stvit_video.engine import distributed as D
from stvit_video.engine.meters import EvalMeter, TrainMeter

NUM_ITEMS, NUM_CLASSES = 7, 6  # an odd count: the two shards differ in length


def meter_data():
    """The same logits, labels and per-step losses on every process."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(NUM_ITEMS, NUM_CLASSES, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (NUM_ITEMS,), generator=g)
    # training steps per rank: (loss, items); rank 1's second step has a NaN loss
    steps = {0: [(1.5, [0, 1, 2]), (2.5, [3])], 1: [(0.5, [4, 5]), (float("nan"), [6])]}
    return logits, labels, steps


def feed_meters(items, steps):
    """An EvalMeter over ``items`` in batches of 2, a TrainMeter over ``steps``; not synced."""
    logits, labels, _ = meter_data()
    evaluation = EvalMeter()
    for start in range(0, len(items), 2):
        batch = items[start:start + 2]
        evaluation.update(logits[batch], labels[batch])
    train = TrainMeter()
    for loss, batch in steps:
        train.update(torch.tensor(loss), logits[batch], labels[batch], len(batch), data_time=0.1, iter_time=0.4)
    return evaluation, train


def _two_rank_worker(ctx: D.DistContext, out_dir: str) -> None:
    assert (torch.distributed.get_rank(), torch.distributed.get_world_size()) == (ctx.rank, 2)
    result = {"ctx": [ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device), ctx.backend, ctx.init_method]}
    result["sum"] = D.all_reduce_sum(torch.tensor([ctx.rank + 1.0, 10.0])).tolist()
    result["gathered"] = D.all_gather_object({"rank": ctx.rank, "rows": [ctx.rank] * (ctx.rank + 1)})
    result["broadcast"] = D.broadcast_object(f"from rank {ctx.rank}", src=1)
    D.barrier()
    # the shard of datasets.loader.ShardSampler (not imported: the datasets package is slow to import
    # in every new process)
    evaluation, train = feed_meters(list(range(ctx.rank, NUM_ITEMS, 2)), meter_data()[2][ctx.rank])
    result["eval"] = evaluation.sync()
    result["train"] = train.sync()
    # last: a rank that does not arrive (stuck before the check, as on a misconfigured node)
    if ctx.rank == 0:
        start = time.monotonic()
        try:
            D.startup_check(ctx, timeout_s=1.5)
            message = "no error"
        except RuntimeError as e:
            message = str(e)
        result["late_check"] = {"message": message, "elapsed": time.monotonic() - start}
    else:
        time.sleep(2.5)
    with open(f"{out_dir}/rank{ctx.rank}.json", "w") as f:
        json.dump(result, f)
    # rank 0's group timed out above and must not be used again: leave it here, so spawn's
    # final barrier (which would wait for the full timeout on a broken group) is skipped
    D.destroy()


_TWO_RANK_RESULTS: list = []


def two_rank_results(tmp_path_factory) -> list:
    """Results of both ranks of one real 2-process gloo run, started once per session and
    shared by test_distributed and test_meters (each new process imports torch: seconds)."""
    if not _TWO_RANK_RESULTS:
        out = tmp_path_factory.mktemp("two_ranks")
        D.spawn(_two_rank_worker, (str(out),), nprocs=2, backend="gloo", device="cpu", timeout_s=60)
        _TWO_RANK_RESULTS.extend(json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    return _TWO_RANK_RESULTS
