"""stvit_video.utils.cpu_malloc: freed CPU tensor memory is reused instead of page-faulted in anew."""
import subprocess
import sys

import pytest

from stvit_video.utils import cpu_malloc

glibc_only = pytest.mark.skipif(cpu_malloc._glibc() is None, reason="the setting applies to glibc malloc only")

# A 64 MiB tensor is freed while a small tensor allocated after it stays alive (so the block
# cannot merge back into the top of the heap), then a 32 MiB tensor is allocated and written:
# the minor page faults of that last step are printed.
_PROBE = """
import resource, sys, torch
from stvit_video.utils.cpu_malloc import cpu_malloc_mode, keep_freed_cpu_memory
if sys.argv[1] == "reuse":
    assert keep_freed_cpu_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
big = torch.ones(2**24)
pin = torch.ones(16)
del big
before = faults()
again = torch.ones(2**23)
print(faults() - before, cpu_malloc_mode())
"""


def _probe(mode: str) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout
    faults, label = out.strip().split(" ", 1)
    return int(faults), label


@glibc_only
def test_reuse_serves_a_new_tensor_from_freed_memory_without_page_faults():
    faults, label = _probe("reuse")
    system_faults, system_label = _probe("system")
    # 32 MiB = 8192 pages of 4 KiB: the default maps fresh memory and faults each page in
    assert system_faults >= 4096, system_faults
    assert faults < 256, faults
    assert label.startswith("reuse") and system_label.startswith("system")


def test_the_mode_is_reported_and_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(cpu_malloc, "_mode", None)
    monkeypatch.setattr(cpu_malloc, "_glibc", lambda: None)
    assert cpu_malloc.cpu_malloc_mode() == "system"
    assert cpu_malloc.keep_freed_cpu_memory() is False
    assert cpu_malloc.cpu_malloc_mode() == "system (not glibc)"


class _FakeMallopt:
    def __init__(self, result: int) -> None:
        self.result, self.argtypes = result, None

    def __call__(self, param: int, value: int) -> int:
        return self.result


@pytest.mark.parametrize("result, log, expected", [
    (1, True, [("INFO", "freed blocks are kept for reuse")]),
    (1, False, []),  # loader workers: silent when it works
    (0, False, [("WARNING", "mallopt refused")]),  # ... and still warn when it does not
])
def test_what_keep_freed_cpu_memory_logs(monkeypatch, caplog, result, log, expected):
    monkeypatch.setattr(cpu_malloc, "_mode", None)
    monkeypatch.setattr(cpu_malloc, "_glibc", lambda: type("Libc", (), {"mallopt": _FakeMallopt(result)})())
    with caplog.at_level("INFO", logger=cpu_malloc.__name__):
        assert cpu_malloc.keep_freed_cpu_memory(log=log) is bool(result)
    assert [r.levelname for r in caplog.records] == [level for level, _ in expected]
    assert all(words in r.getMessage() for r, (_, words) in zip(caplog.records, expected))


def _run_job_calls(monkeypatch, reuse: bool) -> int:
    from stvit_video.config import get_cfg_defaults
    from stvit_video.engine import distributed as dist_utils
    from stvit_video.engine import launch

    calls = []
    monkeypatch.setattr(launch, "keep_freed_cpu_memory", lambda: calls.append(1) or True)
    cfg = get_cfg_defaults()
    cfg.NUM_GPUS, cfg.CPU_MALLOC_REUSE = 0, reuse
    cfg.TRAIN.ENABLE = cfg.TEST.ENABLE = False
    ctx = dist_utils.init_distributed(world_size=1, rank=0, local_rank=0, device="cpu")
    try:
        launch.run_job(ctx, cfg)
    finally:
        dist_utils.destroy()
    return len(calls)


def test_a_cpu_run_applies_cpu_malloc_reuse_unless_the_config_turns_it_off(monkeypatch):
    assert _run_job_calls(monkeypatch, reuse=True) == 1
    assert _run_job_calls(monkeypatch, reuse=False) == 0
