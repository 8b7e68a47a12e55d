"""Our checkpoint format: atomic saves, names and pruning, resume that skips broken files,
strict loads with clear errors, inference loads."""
import hashlib
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import stvit_video.engine.checkpoint as ckpt
from stvit_video.engine.checkpoint import (
    CheckpointName, build_checkpoint_state, capture_rng_state, checkpoint_name, clean_temp_files, file_sha256,
    find_resumable, load_for_inference, load_for_resume, parse_checkpoint_name, restore_rng_state,
    save_checkpoint, save_training_checkpoint, unwrap_model)
from stvit_video.utils.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]
TRANSFORM = dict(mean=[0.45, 0.45, 0.45], std=[0.225, 0.225, 0.225], short_side=256, crop=224, num_frames=32,
                 sampling_rate=2, target_fps=0.0, num_clips=4, num_crops=3, out_of_bound="loop")
ARCH = {"name": "swin3d_tiny", "kwargs": {"num_classes": 3, "depths": (2, 2, 6, 2), "drop_path_rate": 0.1}}
LOG = logging.getLogger("test_checkpoint")  # propagates to the root logger that caplog watches


class Tiny(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)  # a buffer (running stats) and an int buffer
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.norm(self.body(x)).relu())


class FakeCompiled(nn.Module):
    """What torch.compile returns: the model under ``_orig_mod``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model


def _trained(steps: int = 2):
    model = Tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for _ in range(steps):
        loss = model(torch.randn(6, 4)).logsumexp(1).mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return model, optimizer, scaler


def _position(samples: int, **changes) -> dict:
    return {"samples_in_epoch": samples, "items_per_step": 8, "items_per_epoch": 96, "num_items": 95,
            "world_size": 2, "accum_steps": 1, "batch_size": 8, "seed": 0, "repeated_samples": 1,
            **changes}


def _state(model, optimizer=None, scaler=None, *, epoch=1, it=0, step=10, best=None, samples=None, **kw):
    kw = {"cfg_text": "TRAIN:\n  BATCH_SIZE: 8\n", "class_names": ["a b", "c", "d"], "test_transform": TRANSFORM,
          "arch": ARCH, "position": None if samples is None else _position(samples), **kw}
    return build_checkpoint_state(model=model, optimizer=optimizer, scaler=scaler, epoch=epoch, iter_in_epoch=it,
                                  global_step=step, best_metric=best, **kw)


# ----------------------------------------------------------------------------------------- #
# Format and round trip
# ----------------------------------------------------------------------------------------- #
def test_state_is_the_documented_dict_and_loads_with_weights_only(tmp_path):
    model, optimizer, scaler = _trained()
    state = _state(nn.DataParallel(FakeCompiled(model)), optimizer, scaler, best=71.5)
    assert list(state) == list(ckpt.STATE_KEYS)  # format_version first
    assert set(state["model"]) == set(model.state_dict())  # no "module." / "_orig_mod." prefixes
    path = save_checkpoint(tmp_path / "x.pyth", state)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert loaded["format_version"] == 1 and loaded["arch"]["kwargs"]["depths"] == (2, 2, 6, 2)
    assert loaded["rng"]["numpy"]["keys"] == state["rng"]["numpy"]["keys"]
    assert loaded["scaler"]["scale"] == scaler.get_scale()


def test_resume_restores_model_optimizer_scaler_and_progress(tmp_path):
    model, optimizer, scaler = _trained()
    save_training_checkpoint(tmp_path, _state(model, optimizer, scaler, epoch=2, it=7, step=47, best=60.0),
                             is_best=False)
    found = find_resumable(tmp_path, LOG)
    assert found is not None and found[0].name == "checkpoint_epoch_00003_iter_000007.pyth"
    fresh, fresh_opt, fresh_scaler = Tiny(), None, torch.amp.GradScaler("cpu")
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    point = load_for_resume(found[1], FakeCompiled(fresh), fresh_opt, fresh_scaler)
    assert point == (2, 7, 47, 60.0)
    assert found[1]['position'] is None  # an iteration-named file of an older version: no sample position
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    saved, restored = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert torch.equal(saved[0]["exp_avg"], restored[0]["exp_avg"]) and float(restored[0]["step"]) == 2
    assert fresh_scaler.get_scale() == scaler.get_scale()
    # the next step is identical for the original and the resumed pair
    x = torch.randn(6, 4)
    for m, opt in ((model, optimizer), (fresh, fresh_opt)):
        m.zero_grad()
        m(x).sum().backward()
        opt.step()
    assert torch.equal(model.head.weight, fresh.head.weight)


def test_rng_state_round_trips_through_a_file(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in the legacy NumPy state
    path = save_checkpoint(tmp_path / "x.pyth", _state(Tiny(), rng=capture_rng_state()))
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]


def test_values_weights_only_cannot_read_are_refused_at_save_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"state\['extra'\]\['acc'\] is a numpy.float32"):
        save_checkpoint(tmp_path / "x.pyth", _state(Tiny(), extra={"acc": np.float32(1.0)}))
    with pytest.raises(ValueError, match=r"state\['arch'\]\['kwargs'\]\['norm_layer'\] is a builtins.type"):
        save_checkpoint(tmp_path / "x.pyth", _state(Tiny(), arch={"name": "m", "kwargs": {"norm_layer": nn.LayerNorm}}))
    with pytest.raises(ValueError, match="test_transform lacks \\['num_crops'\\]"):
        build_checkpoint_state(model=Tiny(), optimizer=None, scaler=None, epoch=0, iter_in_epoch=0, global_step=0,
                               cfg_text="", class_names=None, arch=ARCH, best_metric=None,
                               test_transform={k: v for k, v in TRANSFORM.items() if k != "num_crops"})
    assert list(tmp_path.iterdir()) == []


def test_unwrap_model_strips_data_parallel_and_compile_wrappers():
    model = Tiny()
    assert unwrap_model(FakeCompiled(nn.DataParallel(FakeCompiled(model)))) is model
    assert unwrap_model(model) is model


# ----------------------------------------------------------------------------------------- #
# Atomic writes
# ----------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_save_leaves_the_previous_file_and_no_temporary_file(tmp_path, monkeypatch, error):
    path = save_checkpoint(tmp_path / "last.pyth", _state(Tiny(), epoch=1))
    before = path.read_bytes()

    def half_then_fail(obj, f):
        f.write(before[: len(before) // 2])
        raise error

    monkeypatch.setattr(ckpt.torch, "save", half_then_fail)
    with pytest.raises(type(error)):
        save_checkpoint(path, _state(Tiny(), epoch=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pyth"]


def test_a_process_killed_while_saving_leaves_a_loadable_file(tmp_path):
    """SIGKILL a process that rewrites a 24 MB checkpoint in a loop, while a temporary file exists."""
    script = textwrap.dedent(f"""
        import torch
        from stvit_video.engine.checkpoint import save_checkpoint, FORMAT_VERSION, STATE_KEYS
        state = {{k: None for k in STATE_KEYS}}
        state.update(format_version=FORMAT_VERSION, model={{"w": torch.zeros(6_000_000)}})
        for i in range(1000):
            state["epoch"] = i
            save_checkpoint({str(tmp_path / "last.pyth")!r}, state)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the file exists and a rewrite is under way
            names = os.listdir(tmp_path)
            if "last.pyth" in names and any(".tmp-" in n for n in names):
                break
            time.sleep(0.002)
        else:
            pytest.fail("the saving process never rewrote the file")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(tmp_path / "last.pyth", weights_only=True)
    assert state["model"]["w"].shape == (6_000_000,) and state["epoch"] >= 0
    # the killed write left its temporary file; nothing reads it, and it can be cleaned
    assert len(clean_temp_files(tmp_path)) == 1 and os.listdir(tmp_path) == ["last.pyth"]


# ----------------------------------------------------------------------------------------- #
# Names, last/best, pruning
# ----------------------------------------------------------------------------------------- #
def test_names_round_trip_and_order_by_training_progress():
    assert checkpoint_name(3) == "checkpoint_epoch_00003.pyth"
    assert checkpoint_name(4, 32000) == "checkpoint_epoch_00004_sample_00032000.pyth"
    assert parse_checkpoint_name("/x/checkpoint_epoch_00004_sample_00032000.pyth") == CheckpointName(4, 32000)
    assert parse_checkpoint_name("checkpoint_epoch_00003.pyth") == CheckpointName(3, None)
    # the iteration names of older versions still parse
    assert parse_checkpoint_name("checkpoint_epoch_00004_iter_000500.pyth") == CheckpointName(4, 500, "iter")
    for other in ("last.pyth", "best.pyth", "checkpoint_epoch_00003.pyth.tmp-12-ab", "checkpoint_epoch_3.pyth"):
        assert parse_checkpoint_name(other) is None
    # end of epoch 3 < 500 samples into epoch 4 < end of epoch 4; mid-epoch 3 is older than end of 3;
    # an old iteration name is older than the sample names of its epoch (it came before the upgrade)
    order = sorted([CheckpointName(4, None), CheckpointName(4, 500), CheckpointName(3, None), CheckpointName(3, 900),
                    CheckpointName(4, 9000, "iter")], key=lambda n: n.progress)
    assert order == [CheckpointName(3, 900), CheckpointName(3, None), CheckpointName(4, 9000, "iter"),
                     CheckpointName(4, 500), CheckpointName(4, None)]


def test_training_checkpoints_write_last_and_best_and_prune_only_superseded_mid_epoch_files(tmp_path):
    model = Tiny()

    def save(epoch, samples, is_best=False, keep=1):
        state = _state(model, epoch=epoch, it=samples // 8, samples=samples)
        return save_training_checkpoint(tmp_path, state, is_best=is_best, keep_mid_epoch=keep).name

    def files():
        return sorted(p.name for p in tmp_path.iterdir())

    assert save(1, 0, is_best=True) == "checkpoint_epoch_00001.pyth"
    assert (tmp_path / "best.pyth").read_bytes() == (tmp_path / "checkpoint_epoch_00001.pyth").read_bytes()
    assert save(1, 16) == "checkpoint_epoch_00002_sample_00000016.pyth"
    assert save(1, 32) == "checkpoint_epoch_00002_sample_00000032.pyth"
    assert files() == ["best.pyth", "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002_sample_00000032.pyth",
                       "last.pyth"]
    newest = tmp_path / "checkpoint_epoch_00002_sample_00000032.pyth"
    assert (tmp_path / "last.pyth").read_bytes() == newest.read_bytes()
    save(1, 48, keep=2)
    assert "checkpoint_epoch_00002_sample_00000032.pyth" in files()  # keep=2: the previous one stays
    save(2, 0)  # the end of epoch 2 supersedes its mid-epoch files
    assert files() == ["best.pyth", "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00002.pyth", "last.pyth"]
    assert torch.load(tmp_path / "best.pyth", weights_only=True)["epoch"] == 1
    assert torch.load(tmp_path / "last.pyth", weights_only=True)["epoch"] == 2


# ----------------------------------------------------------------------------------------- #
# Resume: broken files are named and skipped
# ----------------------------------------------------------------------------------------- #
def test_find_resumable_skips_broken_files_newest_first_and_names_them(tmp_path, caplog):
    model = Tiny()
    good = save_training_checkpoint(tmp_path, _state(model, epoch=1), is_best=False)
    whole = good.read_bytes()
    (tmp_path / checkpoint_name(2)).write_bytes(whole[: len(whole) // 2])  # truncated
    (tmp_path / checkpoint_name(3)).write_bytes(b"")  # zero bytes
    (tmp_path / checkpoint_name(4)).write_bytes(b"not a checkpoint at all" * 10)  # garbage
    torch.save({"format_version": 1, "model": {}}, tmp_path / checkpoint_name(5))  # missing keys
    torch.save({"state_dict": {}}, tmp_path / checkpoint_name(5, 10))  # not our format
    (tmp_path / "last.pyth").write_bytes(b"")  # never a candidate
    with caplog.at_level(logging.WARNING, logger="test_checkpoint"):
        found = find_resumable(tmp_path, LOG)
    assert found is not None and found[0] == good and found[1]["epoch"] == 1
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 5
    # newest first: end of epoch 5, 10 iterations into epoch 5, end of epochs 4, 3, 2
    for message, (name, reason) in zip(warned, [
            (checkpoint_name(5), "missing keys ['optimizer', 'scaler', 'epoch'"),
            (checkpoint_name(5, 10), "no 'format_version' key"),
            (checkpoint_name(4), "cannot be read, truncated or corrupt? (UnpicklingError: Unsupported operand"),
            (checkpoint_name(3), "cannot be read, truncated or corrupt? (EOFError"),
            (checkpoint_name(2), "cannot be read")]):
        assert name in message and reason in message, message


def test_find_resumable_without_usable_files_returns_none(tmp_path):
    assert find_resumable(tmp_path / "missing", LOG) is None
    (tmp_path / checkpoint_name(1)).write_bytes(b"")
    assert find_resumable(tmp_path, LOG) is None


def test_load_for_resume_errors_name_the_keys_and_groups():
    state = _state(Tiny(classes=3), torch.optim.SGD(Tiny().parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match=r"shape mismatch: head.weight: checkpoint \(3, 8\) vs model \(5, 8\)"):
        load_for_resume(state, Tiny(classes=5), None, None)
    other = nn.Sequential(Tiny())
    with pytest.raises(CheckpointError, match="missing from the checkpoint: .*0.body.weight.*not in the model: .*body.weight"):
        load_for_resume(state, other, None, None)
    model = Tiny()
    two_groups = torch.optim.SGD([{"params": [model.body.weight]}, {"params": list(model.head.parameters())}], lr=0.1)
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[6\], the optimizer now \[1, 2\]"):
        load_for_resume(state, model, two_groups, None)
    with pytest.raises(CheckpointError, match="missing keys \\['global_step'\\]"):
        load_for_resume({k: v for k, v in state.items() if k != "global_step"}, model, None, None)


# ----------------------------------------------------------------------------------------- #
# Inference
# ----------------------------------------------------------------------------------------- #
def test_load_for_inference_returns_weights_classes_transform_arch_and_hash(tmp_path):
    model = Tiny()
    path = save_training_checkpoint(tmp_path, _state(nn.DataParallel(model), epoch=30), is_best=True)
    inf = load_for_inference(tmp_path / "best.pyth")
    assert inf.class_names == ["a b", "c", "d"] and inf.test_transform == TRANSFORM and inf.arch == ARCH
    assert inf.epoch == 30 and inf.cfg_text.startswith("TRAIN:")
    assert inf.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    rebuilt = Tiny()
    rebuilt.load_state_dict(inf.state_dict, strict=True)
    assert torch.equal(rebuilt.head.bias, model.head.bias)


def test_load_for_inference_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint file .*nope.pyth does not exist"):
        load_for_inference(tmp_path / "nope.pyth")
    torch.save({"state_dict": {"backbone.x": torch.zeros(1)}, "meta": {}}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match=r"official.pth is not .*no 'format_version'.*TRAIN.CHECKPOINT_TYPE video_swin"):
        load_for_inference(tmp_path / "official.pth")
    (tmp_path / "garbage.pyth").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"garbage.pyth cannot be read.*swin2d"):
        load_for_inference(tmp_path / "garbage.pyth")
    future = _state(Tiny())
    future["format_version"] = 2
    torch.save(future, tmp_path / "future.pyth")
    with pytest.raises(CheckpointError, match="format_version 2; this stvit_video reads version 1"):
        load_for_inference(tmp_path / "future.pyth")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_states_and_cuda_weights_round_trip(tmp_path):
    model = Tiny().cuda()
    torch.cuda.manual_seed_all(7)
    torch.rand(1, device="cuda")  # CUDA initialised: its generator state is captured
    path = save_checkpoint(tmp_path / "x.pyth", _state(model))
    expected = torch.rand(4, device="cuda")
    torch.cuda.manual_seed_all(99)
    state = torch.load(path, weights_only=True)
    # only this rank's device: restoring others would create a context on every GPU
    assert len(state["rng"]["cuda"]) == 1 and state["rng"]["cuda_device"] == torch.cuda.current_device()
    restore_rng_state(state["rng"])
    assert torch.equal(torch.rand(4, device="cuda"), expected)
    inf = load_for_inference(path)
    assert inf.state_dict["head.weight"].device.type == "cpu"
    assert torch.equal(inf.state_dict["head.weight"], model.head.weight.detach().cpu())


# ----------------------------------------------------------------------------------------- #
# Resume: optimizer hyperparameters, regrouped parameters, every rank's RNG
# ----------------------------------------------------------------------------------------- #
def _named_groups(model, weight_decay, decay_bias):
    """Two groups named as ours are (``param_names``): decayed weights, and biases (decayed or not)."""
    weights = [(n, p) for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [(n, p) for n, p in model.named_parameters() if n.endswith("bias")]
    if decay_bias:
        weights, biases = weights + biases, []
    groups = [{"params": [p for _, p in weights], "param_names": [n for n, _ in weights], "weight_decay": weight_decay,
               "lr_mult": 1.0}]
    if biases:
        groups.append({"params": [p for _, p in biases], "param_names": [n for n, _ in biases], "weight_decay": 0.0,
                       "lr_mult": 1.0})
    return groups


def test_resume_keeps_the_configs_hyperparameters_logs_each_change_and_matches_state_by_name(caplog):
    model = Tiny()
    optimizer = torch.optim.AdamW(_named_groups(model, 0.05, decay_bias=False), lr=1e-2, betas=(0.9, 0.999))
    model(torch.randn(6, 4)).sum().backward()
    optimizer.step()
    state = _state(model, optimizer)
    # the config now: another weight decay, beta1, and biases decayed too (one group instead of two)
    fresh = Tiny()
    now = torch.optim.AdamW(_named_groups(fresh, 0.02, decay_bias=True), lr=1e-2, betas=(0.8, 0.999))
    with caplog.at_level(logging.WARNING):
        load_for_resume(state, fresh, now, None)
    assert now.param_groups[0]["weight_decay"] == 0.02 and now.param_groups[0]["betas"] == (0.8, 0.999)
    text = caplog.text
    assert "weight_decay 0.05 -> 0.02 for 3 parameter(s)" in text
    assert "weight_decay 0.0 -> 0.02 for 3 parameter(s)" in text
    assert "betas [0.9, 0.999] -> [0.8, 0.999] for 6 parameter(s)" in text
    # each parameter got its own moments back, whatever group it is in now
    names = now.param_groups[0]["param_names"]
    saved = {n: optimizer.state[p] for g in optimizer.param_groups for n, p in zip(g["param_names"], g["params"])}
    for name, p in zip(names, now.param_groups[0]["params"]):
        assert torch.equal(now.state[p]["exp_avg"], saved[name]["exp_avg"]), name
    # a parameter without a saved state is named
    smaller = torch.optim.AdamW(_named_groups(Tiny(), 0.02, decay_bias=True)[:1], lr=1e-2)
    smaller.param_groups[0]["param_names"].append("extra.weight")
    smaller.param_groups[0]["params"].append(nn.Parameter(torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"1 without a saved state, e.g. \['extra.weight'\]"):
        load_for_resume(state, Tiny(), smaller, None)


def test_every_ranks_rng_state_is_stored_and_the_position_travels(tmp_path):
    torch.manual_seed(1)
    rank0 = capture_rng_state()
    torch.manual_seed(2)
    rank1 = capture_rng_state()
    state = _state(Tiny(), torch.optim.SGD(Tiny().parameters(), lr=0.1), epoch=2, it=3, samples=24,
                   rng_ranks=[rank0, rank1])
    assert state["rng"] is not None and torch.equal(state["rng"]["torch"], rank0["torch"])  # rank 0's is also "rng"
    path = save_training_checkpoint(tmp_path, state, is_best=False)
    assert path.name == "checkpoint_epoch_00003_sample_00000024.pyth"
    loaded = torch.load(path, weights_only=True)
    restore_rng_state(loaded["rng_ranks"][1])
    expected = torch.rand(3)
    torch.manual_seed(2)
    assert torch.equal(torch.rand(3), expected)
    assert loaded["position"] == _position(24)
    model = Tiny()
    point = load_for_resume(loaded, model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    assert (point.epoch, point.iter_in_epoch) == (2, 3)
    with pytest.raises(ValueError, match="position must have the keys"):
        _state(Tiny(), position={"samples_in_epoch": 3})
