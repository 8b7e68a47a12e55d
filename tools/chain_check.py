#!/usr/bin/env python
"""The whole command-line chain on one device, one line per stage (``ok`` or the error).

    python tools/chain_check.py --device cuda --out chain_results     # what tools/gpu_checks.sh runs
    python tools/chain_check.py --device cpu --out /tmp/chain --no-compile --per-class 4

Stages, each a real command line (``python -m data_prep``, ``tools/run_net.py``, ``tools/predict.py``,
``tools/export.py``) in a subprocess, as a user runs them:

    data     data_prep synthetic + all: a small mini-Kinetics, resized, verified, listed
    train    the demo STViT-R trained 2 epochs (bf16 autocast and MODEL.COMPILE on CUDA), a
             checkpoint every 2 steps, a validation per epoch
    resume   the same run killed with SIGKILL inside epoch 2, an empty newer checkpoint planted
             (a full disk at the wrong moment), then started again: it must skip the empty
             file, resume from the mid-epoch checkpoint, log every step once with the LR of the
             uninterrupted run, and end with its weights: bitwise, or within 1% of what the
             resumed steps changed (float rounding: MKL's CPU kernels depend on memory
             alignment, CUDA's use atomics), else on CUDA within the spread of two
             uninterrupted runs; a wrong sample, LR or random stream moves them as much as
             the resumed steps do
    test     the multi-view test (4 clips x 3 crops and the centre pass) with its report
    predict  tools/predict.py on the test videos
    export   tools/export.py, whose own parity check compares the program with the model
    ddp      (2+ GPUs) torchrun with 2 processes against the 1-process run

Exit code 0 when every stage that ran passed. Needs the project's dependencies (fvcore, PyAV;
decord or ``--backend pyav``); nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from stvit_video.utils.video_formats import DECODER_BACKENDS

ROOT = Path(__file__).resolve().parents[1]


class StageFailed(Exception):
    """A stage's check failed; the message is its one line."""


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class Chain:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.data = self.out / "data"
        self.cuda = args.device == "cuda"
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                    "PYTHONUNBUFFERED": "1"}

    # ---------------------------------------------------------------- helpers
    def run(self, *cmd: str, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-W", "ignore", *cmd], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=timeout or self.args.stage_timeout)
        if result.returncode != 0:
            raise StageFailed(f"{' '.join(cmd[:2])} exited {result.returncode}: {_tail(result.stderr or result.stdout)}")
        return result

    def job(self, out: Path, *extra: str) -> list[str]:
        a = self.args
        return ["tools/run_net.py", "--cfg", "demo", "DATA.PATH_TO_DATA_DIR", str(self.data),
                "DATA.GENERATE_IF_MISSING", "", "OUTPUT_DIR", str(out), "NUM_GPUS", "1" if self.cuda else "0",
                "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.5", "TRAIN.BATCH_SIZE", str(a.batch),
                "SOLVER.REFERENCE_BATCH_SIZE", str(a.batch), "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1",
                "TRAIN.CHECKPOINT_PERIOD_ITERS", "2", "LOG_PERIOD", "1", "TEST.ENABLE", "False",
                "TEST.TEMPORAL_SHUFFLE_CHECK", "False", "TEST.COMPARE_WITH", "[]", "TEST.SPLIT", "test",
                "DATA_LOADER.NUM_WORKERS", str(a.workers), "DATA.DECODING_BACKEND", a.backend,
                "MODEL.COMPILE", str(bool(a.compile)), "TRAIN.MIXED_PRECISION", str(self.cuda), "TRAIN.AMP_DTYPE", "bf16",
                *extra]

    @staticmethod
    def train_rows(out: Path) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
        return [(r["global_step"], r["lr"]) for r in rows if r["mode"] == "train"]

    @staticmethod
    def weights(path: Path) -> dict:
        from stvit_video.utils.checkpoint_file import read_file

        return read_file(path)["model"]

    @classmethod
    def max_diff(cls, a: Path | dict, b: Path | dict) -> float:
        """The largest difference between two checkpoints' (or weight dicts') floating-point weights."""
        wa, wb = (cls.weights(x) if isinstance(x, Path) else x for x in (a, b))
        if wa.keys() != wb.keys():
            raise StageFailed(f"{a} and {b} hold different parameters")
        return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].is_floating_point())

    # ---------------------------------------------------------------- stages
    def stage_data(self) -> str:
        source = self.out / "source"
        self.run("-m", "data_prep", "synthetic", "--out", str(source), "--per-class", str(self.args.per_class),
                 "--no-progress", "--no-next-step")
        self.run("-m", "data_prep", "all", "--annotations", str(source / "annotations"), "--raw", str(source / "raw"),
                 "--out", str(self.data), "--short-side", "64", "--backend", self.args.backend, "--no-progress",
                 "--no-next-step")
        counts = {s: len((self.data / f"{s}.csv").read_text().splitlines()) for s in ("train", "val", "test")}
        return ", ".join(f"{n} {s}" for s, n in counts.items()) + " videos"

    def stage_train(self) -> str:
        out = self.out / "whole"
        self.run(*self.job(out))
        if not (out / "checkpoints" / "checkpoint_epoch_00002.pyth").is_file():
            raise StageFailed(f"no checkpoint of epoch 2 in {out / 'checkpoints'}")
        steps = len(self.train_rows(out))
        return f"{steps} steps, {self.args.batch} clips each, on {self.args.device}"

    def stage_resume(self) -> str:
        whole, out = self.out / "whole", self.out / "killed"
        folder = out / "checkpoints"
        proc = subprocess.Popen([sys.executable, "-W", "ignore", *self.job(out)], cwd=ROOT, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + self.args.stage_timeout
        while proc.poll() is None and time.time() < deadline and not list(folder.glob("checkpoint_epoch_00002_sample_*.pyth")):
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:
            raise StageFailed(f"the run ended (exit {proc.returncode}) before it could be killed inside epoch 2; "
                              "give it a longer epoch (--per-class)")
        if (folder / "checkpoint_epoch_00002.pyth").exists():
            raise StageFailed("killed inside epoch 2, yet its end-of-epoch checkpoint exists")
        mid = sorted(folder.glob("checkpoint_epoch_00002_sample_*.pyth"))
        if not mid:
            raise StageFailed(f"no mid-epoch checkpoint of epoch 2 in {folder}")
        at_resume = self.weights(mid[-1])  # the newest real one; resume prunes it when epoch 2 ends
        empty = folder / "checkpoint_epoch_00002_sample_99999999.pyth"
        empty.write_bytes(b"")  # newer than any real one: resume must skip it and say so
        resumed = self.run(*self.job(out))
        log = resumed.stdout + resumed.stderr
        if empty.name not in log or "resuming from" not in log:
            raise StageFailed(f"the resumed run did not name the skipped empty {empty.name} or did not resume: "
                              f"{_tail(log)}")
        rows, expected = self.train_rows(out), self.train_rows(whole)
        if rows != expected:
            steps = [s for s, _ in rows]
            raise StageFailed(f"stats.jsonl: {len(rows)} train rows (steps logged twice: "
                              f"{len(steps) - len(set(steps))}) against {len(expected)} of the uninterrupted run, or "
                              "another LR at some step")
        diff = self.max_diff(whole / "checkpoints" / "last.pyth", folder / "last.pyth")
        note = f"resumed from {mid[-1].name}, {len(rows)} steps with the uninterrupted LRs"
        if diff == 0:
            return note + ", weights bitwise equal"
        # Not bitwise: float rounding that differs between processes (MKL's kernels depend on memory
        # alignment without MKL_CBWR; CUDA kernels with atomics), or a wrong resume. A wrong sample,
        # LR or random stream changes the weights as much as the resumed steps do; rounding does not.
        update = self.max_diff(at_resume, whole / "checkpoints" / "last.pyth")
        if diff <= 0.01 * update:
            return note + (f", weights within {diff:.2g} of it ({100 * diff / update:.2g}% of what the resumed steps "
                           f"changed, {update:.2g}: float rounding)")
        if not self.cuda:
            raise StageFailed(f"the resumed weights differ from the uninterrupted run by {diff:.3g}, "
                              f"{100 * diff / update:.2g}% of what the resumed steps changed ({update:.3g})")
        again = self.out / "whole_again"
        self.run(*self.job(again))
        noise = self.max_diff(whole / "checkpoints" / "last.pyth", again / "checkpoints" / "last.pyth")
        if diff > 4 * noise + 1e-7:
            raise StageFailed(f"the resumed weights differ by {diff:.3g}, two uninterrupted runs by {noise:.3g}")
        return note + f", weights within {diff:.2g} (two uninterrupted runs: {noise:.2g}, nondeterministic kernels)"

    def stage_test(self) -> str:
        out = self.out / "killed"
        self.run(*self.job(out, "TRAIN.ENABLE", "False", "TEST.ENABLE", "True"))
        report = json.loads((out / "eval" / "report.json").read_text())
        h = report["headline"]
        if not (out / "eval" / "results.npz").is_file() or not (out / "eval" / "report.html").is_file():
            raise StageFailed("eval/results.npz or eval/report.html missing")
        if "separate pass" not in h["one_view"]["view"]:
            raise StageFailed(f"4 clips: the 1-view headline should be the separate centre pass, got "
                              f"{h['one_view']['view']!r}")
        gflops = report["meta"]["model"].get("gflops_per_view")
        return (f"{h['videos']} videos x {h['views_per_video']} views: top-1 {h['top1']:.1f}%, 1 view "
                f"{h['one_view']['top1']:.1f}%, {gflops} GFLOPs/view")

    def stage_predict(self) -> str:
        out = self.out / "predict.json"
        self.run("tools/predict.py", str(self.out / "killed" / "checkpoints" / "last.pyth"),
                 str(self.data / "videos" / "test"), "--views", "2x3", "--json", str(out), "--device", self.args.device)
        rows = json.loads(out.read_text())
        if not rows or any(r["error"] for r in rows):
            raise StageFailed(f"{len(rows)} predictions, some with errors")
        return f"{len(rows)} videos"

    def stage_export(self) -> str:
        out = self.out / "export" / "model.pt2"
        result = self.run("tools/export.py", str(self.out / "killed" / "checkpoints" / "last.pyth"), "--out", str(out))
        if not out.is_file() or not out.with_suffix(".json").is_file():
            raise StageFailed("the program or its card is missing")
        return _tail(result.stdout, 1)

    def stage_ddp(self) -> str:
        out = self.out / "ddp"
        self.run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 *self.job(out, "NUM_GPUS", "2", "SOLVER.MAX_EPOCH", "1"))
        single = self.out / "single_epoch"
        self.run(*self.job(single, "SOLVER.MAX_EPOCH", "1"))
        diff = self.max_diff(single / "checkpoints" / "last.pyth", out / "checkpoints" / "last.pyth")
        if diff > 5e-2:
            raise StageFailed(f"2 processes and 1 differ by {diff:.3g} after one epoch")
        return f"2 processes vs 1 after an epoch: max |weight difference| {diff:.2g}"


STAGES: list[tuple[str, Callable[[Chain], str], tuple[str, ...]]] = [
    ("data", Chain.stage_data, ()),
    ("train", Chain.stage_train, ("data",)),
    ("resume", Chain.stage_resume, ("train",)),
    ("test", Chain.stage_test, ("resume",)),
    ("predict", Chain.stage_predict, ("resume",)),
    ("export", Chain.stage_export, ("resume",)),
    ("ddp", Chain.stage_ddp, ("data",)),
]


def _default_backend() -> str:
    try:
        import decord  # noqa: F401
    except ImportError:
        return "pyav"
    return "decord"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--out", default="chain_results", help="working folder (emptied first)")
    p.add_argument("--compile", type=int, choices=(0, 1), default=None, help="MODEL.COMPILE (default: 1 on CUDA)")
    p.add_argument("--per-class", type=int, default=8, help="training clips per class of the generated data")
    p.add_argument("--batch", type=int, default=4, help="TRAIN.BATCH_SIZE")
    p.add_argument("--workers", type=int, default=None, help="DATA_LOADER.NUM_WORKERS (default: 2 on CUDA, 0 on CPU)")
    p.add_argument("--backend", choices=DECODER_BACKENDS, default=None, help="decoder (default: decord if installed)")
    p.add_argument("--stages", nargs="+", default=[name for name, _, _ in STAGES], help="stages to run")
    p.add_argument("--stage-timeout", type=float, default=300.0, help="seconds one command may take")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    args.compile = int(cuda) if args.compile is None else args.compile
    args.workers = (2 if cuda else 0) if args.workers is None else args.workers
    args.backend = args.backend or _default_backend()
    import shutil

    import torch

    if cuda and not torch.cuda.is_available():
        print("stage env: FAILED: --device cuda but torch sees no CUDA device")
        return 1
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    gpus = torch.cuda.device_count() if cuda else 0
    print(f"stage env: ok: torch {torch.__version__}, {torch.cuda.get_device_name(0) if cuda else 'CPU'}"
          f"{f' x {gpus}' if gpus > 1 else ''}, decoder {args.backend}, compile {bool(args.compile)}", flush=True)
    chain, failed = Chain(args), set()
    for name, stage, needs in STAGES:
        if name not in args.stages:
            continue
        if name == "ddp" and gpus < 2:
            print("stage ddp: skipped (needs 2 GPUs)", flush=True)
            continue
        blocked = [n for n in needs if n in failed or n not in args.stages]
        if blocked:
            print(f"stage {name}: skipped (needs {', '.join(blocked)})", flush=True)
            failed.add(name)
            continue
        start = time.perf_counter()
        try:
            note = stage(chain)
            print(f"stage {name}: ok ({time.perf_counter() - start:.1f} s): {note}", flush=True)
        except (StageFailed, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as e:
            failed.add(name)
            print(f"stage {name}: FAILED ({time.perf_counter() - start:.1f} s): {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
