"""Export: a torch.export program with a dynamic batch that equals the eager model behind the
training pipeline's own normalisation, its JSON card, and the command line."""
import json

import pytest
import torch

from stvit_video.datasets.device_transforms import DeviceTransform
from stvit_video.engine.checkpoint import load_for_inference
from stvit_video.engine.export import NormalizedClassifier, export_checkpoint
from stvit_video.export_cli import main as export_main
from stvit_video.models.build import build_model_from_arch

from .conftest import CLASSES


def test_the_program_equals_the_eager_model_on_normalised_frames_at_any_batch(trained_and_tested, tmp_path):
    best = trained_and_tested / "checkpoints/best.pyth"
    report = export_checkpoint(best, tmp_path / "model.pt2")
    assert report.max_abs_diff <= 1e-4 and report.input_shape == (2, 3, 4, 32, 32)
    loaded = load_for_inference(best)
    model = build_model_from_arch(loaded.arch)
    model.load_state_dict(loaded.state_dict)
    model.eval()
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


def test_normalisation_matches_the_device_transform():
    frames = torch.randint(0, 256, (2, 3, 2, 4, 4), dtype=torch.uint8)
    mean, std = (0.45, 0.4, 0.35), (0.22, 0.25, 0.2)
    wrapped = NormalizedClassifier(torch.nn.Identity(), mean, std)
    torch.testing.assert_close(wrapped(frames), DeviceTransform(mean, std)(frames, False), rtol=0, atol=1e-6)


def test_command_line_writes_both_files_and_names_a_bad_checkpoint(trained_and_tested, tmp_path, capsys):
    out = tmp_path / "deploy" / "stvit.pt2"
    assert export_main([str(trained_and_tested / "checkpoints/best.pyth"), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "max |program - eager|" in capsys.readouterr().out
    bad = tmp_path / "bad.pyth"
    bad.write_bytes(b"\x00" * 10)
    assert export_main([str(bad), "--out", str(tmp_path / "x.pt2")]) == 2
    assert f"error: checkpoint: {bad} cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "x.pt2").exists()
    with pytest.raises(SystemExit):
        export_main([str(bad)])  # --out is required
