"""Export: a torch.export program with a dynamic batch that equals the eager model behind the
training pipeline's own normalisation, its JSON card, and the command line."""
import json

import pytest
import torch

from stvit_video.datasets.device_transforms import DeviceTransform
from stvit_video.engine.checkpoint import load_for_inference
from stvit_video.engine import export as export_module
from stvit_video.engine.export import NormalizedClassifier, export_checkpoint
from stvit_video.export_cli import main as export_main

from tests.helpers.colour_data import CLASSES


def _small_model(monkeypatch) -> torch.nn.Module:
    """A quick stand-in for the checkpoint's model (the real one is exported, with its parity check,
    by tools/chain_check.py's export stage, which the suite runs); the checkpoint's transform, class
    names and card are real."""
    torch.manual_seed(0)
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 32 * 32, 3)).eval()
    monkeypatch.setattr(export_module, "build_checkpoint_model", lambda loaded, who: small)
    return small


def test_the_program_equals_the_model_on_normalised_frames_at_any_batch(trained_and_tested, tmp_path, monkeypatch):
    model = _small_model(monkeypatch)
    best = trained_and_tested / "checkpoints/best.pyth"
    report = export_checkpoint(best, tmp_path / "model.pt2")
    assert report.max_abs_diff <= 1e-4 and report.input_shape == (2, 3, 4, 32, 32)
    loaded = load_for_inference(best)
    normalise = DeviceTransform(loaded.test_transform["mean"], loaded.test_transform["std"])
    program = torch.export.load(tmp_path / "model.pt2").module()
    for batch in (1, 5):
        frames = torch.randint(0, 256, (batch, 3, 4, 32, 32), dtype=torch.uint8)
        with torch.no_grad():
            expected = model(normalise(frames, False))  # what the tester feeds the model
            torch.testing.assert_close(program(frames), expected, rtol=1e-5, atol=1e-5)
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["class_names"] == list(CLASSES) and card["program"] == "model.pt2"
    assert card["input"]["shape"] == ["B", 3, 4, 32, 32] and card["output"]["shape"] == ["B", 3]
    assert card["checkpoint"]["sha256"] == loaded.sha256 and card["test_transform"]["crop"] == 32


def test_an_export_that_fails_its_parity_check_writes_nothing(trained_and_tested, tmp_path, monkeypatch):
    _small_model(monkeypatch)
    best = trained_and_tested / "checkpoints/best.pyth"
    export_checkpoint(best, tmp_path / "model.pt2")
    before = (tmp_path / "model.pt2").read_bytes()
    with pytest.raises(RuntimeError, match="differs from the eager model.*nothing was written"):
        export_checkpoint(best, tmp_path / "model.pt2", tolerance=-1.0)
    assert (tmp_path / "model.pt2").read_bytes() == before  # the earlier program, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pt2"]  # no temporary file
    with pytest.raises(RuntimeError):
        export_checkpoint(best, tmp_path / "new.pt2", tolerance=-1.0)
    assert not (tmp_path / "new.pt2").exists() and not (tmp_path / "new.json").exists()


def test_normalisation_matches_the_device_transform():
    frames = torch.randint(0, 256, (2, 3, 2, 4, 4), dtype=torch.uint8)
    mean, std = (0.45, 0.4, 0.35), (0.22, 0.25, 0.2)
    wrapped = NormalizedClassifier(torch.nn.Identity(), mean, std)
    torch.testing.assert_close(wrapped(frames), DeviceTransform(mean, std)(frames, False), rtol=0, atol=1e-6)


def test_command_line_names_a_bad_checkpoint(tmp_path, capsys):
    # the command's success path (both files, the parity line) runs in tools/chain_check.py's export stage
    bad = tmp_path / "bad.pyth"
    bad.write_bytes(b"\x00" * 10)
    assert export_main([str(bad), "--out", str(tmp_path / "x.pt2")]) == 2
    assert f"error: checkpoint: {bad} cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "x.pt2").exists()
    with pytest.raises(SystemExit):
        export_main([str(bad)])  # --out is required
