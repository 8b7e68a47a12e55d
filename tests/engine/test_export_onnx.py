"""ONNX export: a model with a dynamic batch that ONNX Runtime runs like the eager model behind the
training pipeline's normalisation, its card, the command line's errors (parity, an operator ONNX
lacks, a format that contradicts the file name, missing packages), and the adaptive max pooling
that STViT's export is decomposed into. A real STViT model is exported by tests/test_bench.py."""
import json
from typing import Optional

import pytest
import torch
import torch.nn.functional as F

from stvit_video.datasets.device_transforms import DeviceTransform
from stvit_video.engine import export as export_module
from stvit_video.engine import export_onnx
from stvit_video.engine.checkpoint import load_for_inference
from stvit_video.engine.export import export_checkpoint, resolve_format
from stvit_video.export_cli import main as export_main
from stvit_video.utils.errors import ConfigError

from tests.helpers.colour_data import CLASSES

ort = pytest.importorskip("onnxruntime")


def _small_model(monkeypatch, model: Optional[torch.nn.Module] = None) -> torch.nn.Module:
    """A quick stand-in for the checkpoint's model (as in test_export.py); transform, class names
    and card are the checkpoint's."""
    torch.manual_seed(0)
    small = model or torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 32 * 32, 3))
    monkeypatch.setattr(export_module, "build_checkpoint_model", lambda loaded, who: small.eval())
    return small


class _AdaptiveMax2d(torch.nn.Module):
    """Pools each frame to 3 x 3 with overlapping bins: an operator with no ONNX translation."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3 * 4 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        return self.head(F.adaptive_max_pool2d(x.reshape(B, C * T, H, W), 3).flatten(1))


def test_onnx_runtime_equals_the_model_on_normalised_frames_at_any_batch(trained_and_tested, tmp_path, monkeypatch):
    model = _small_model(monkeypatch)
    best = trained_and_tested / "checkpoints/best.pyth"
    report = export_checkpoint(best, tmp_path / "model.onnx")  # the format from the suffix
    assert (report.fmt, report.opset) == ("onnx", export_onnx.DEFAULT_OPSET) and report.max_abs_diff <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.onnx"]  # weights inside, no .data
    loaded = load_for_inference(best)
    normalise = DeviceTransform(loaded.test_transform["mean"], loaded.test_transform["std"])
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("frames", ["B", 3, 4, 32, 32], "tensor(uint8)")
    assert (out.name, out.shape) == ("logits", ["B", 3])
    for batch in (1, 3):  # the export's example has 2
        frames = torch.randint(0, 256, (batch, 3, 4, 32, 32), dtype=torch.uint8)
        with torch.no_grad():
            expected = model(normalise(frames, False))  # what the tester feeds the model
        (logits,) = session.run(None, {"frames": frames.numpy()})
        assert (torch.from_numpy(logits) - expected).abs().max().item() < 1e-4
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["format"] == "onnx" and card["opset"] == export_onnx.DEFAULT_OPSET and card["program"] == "model.onnx"
    assert card["class_names"] == list(CLASSES) and card["checkpoint"]["sha256"] == loaded.sha256
    assert card["input"]["name"] == "frames" and card["input"]["shape"] == ["B", 3, 4, 32, 32]
    assert card["onnxruntime"] == ort.__version__ and {"onnx", "onnxscript", "torch"} <= card.keys()
    assert card["checked_with"] == "onnxruntime CPUExecutionProvider" and card["checked_batch"] == 3


def test_command_line_writes_the_asked_opset_and_prints_the_parity(trained_and_tested, tmp_path, monkeypatch, capsys):
    _small_model(monkeypatch)
    out = tmp_path / "deploy.bin"  # an unknown suffix: --format decides
    assert export_main([str(trained_and_tested / "checkpoints/best.pyth"), "--out", str(out), "--format", "onnx",
                        "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert "onnx opset 18" in printed and "max |onnxruntime - eager| = " in printed
    assert json.loads((tmp_path / "deploy.json").read_text())["opset"] == 18
    assert ort.InferenceSession(str(out)).get_inputs()[0].name == "frames"


def test_an_onnx_model_that_fails_its_parity_check_writes_nothing(trained_and_tested, tmp_path, monkeypatch, capsys):
    _small_model(monkeypatch)
    run = export_onnx.OnnxRuntimeModel.__call__
    monkeypatch.setattr(export_onnx.OnnxRuntimeModel, "__call__", lambda self, frames: run(self, frames) + 0.01)
    assert export_main([str(trained_and_tested / "checkpoints/best.pyth"), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "ONNX model (run by onnxruntime) differs from the eager model by 0.01" in err
    assert f"nothing was written to {tmp_path / 'm.onnx'}" in err
    assert list(tmp_path.iterdir()) == []  # no model, no card, no temporary file


def test_an_operator_onnx_lacks_is_named_and_nothing_is_written(trained_and_tested, tmp_path, monkeypatch, capsys):
    _small_model(monkeypatch, _AdaptiveMax2d())
    assert export_main([str(trained_and_tested / "checkpoints/best.pyth"), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "the operator aten.adaptive_max_pool2d.default has no ONNX translation (opset 20)" in err
    assert "--format pt2" in err and list(tmp_path.iterdir()) == []


def test_the_format_comes_from_the_suffix_and_may_not_contradict_it(tmp_path, capsys):
    assert resolve_format("model.onnx") == "onnx" and resolve_format("MODEL.ONNX") == "onnx"
    assert resolve_format("model.pt2") == "pt2" and resolve_format("model") == "pt2"
    assert resolve_format("model.bin", "onnx") == "onnx" and resolve_format("model.onnx", "onnx") == "onnx"
    with pytest.raises(ConfigError, match=r"--format pt2 does not match --out model.onnx .*write model.pt2"):
        resolve_format("model.onnx", "pt2")
    ckpt = str(tmp_path / "missing.pyth")  # never read: the options fail first
    for argv, message in ((["--out", "m.pt2", "--format", "onnx"], "--format onnx does not match --out m.pt2"),
                          (["--out", "m.pt2", "--opset", "18"], "--opset is for the onnx format"),
                          (["--out", "m.onnx", "--opset", "17"], "--opset 17 is below 18")):
        assert export_main([ckpt, *argv]) == 2, argv
        assert f"error: export: {message}" in capsys.readouterr().err


def test_missing_onnx_packages_give_the_pip_command(tmp_path, monkeypatch, capsys):
    real_import = export_onnx.importlib.import_module

    def without_onnxruntime(name: str):
        if name == "onnxruntime":
            raise ModuleNotFoundError("No module named 'onnxruntime'")
        return real_import(name)

    monkeypatch.setattr(export_onnx.importlib, "import_module", without_onnxruntime)
    assert export_main([str(tmp_path / "best.pyth"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert ('error: export: the onnx format needs onnxruntime, not installed; install them with: '
            'pip install "stvit-video[onnx]"') in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size, output_size", [((4, 7, 7), (4, 3, 3)), ((3, 14, 9), (2, 6, 4)), ((5, 5, 5), (5, 5, 5)),
                                               ((2, 3, 4), (1, 1, 1)), ((3, 4, 4), (3, 5, 6))])
def test_adaptive_max_pooling_in_gathers_equals_torch(size, output_size):
    # overlapping bins (7 -> 3), uneven strides (14 -> 6), identity, global, and upsampling bins
    for x in (torch.randn(2, 5, *size), torch.randn(5, *size)):
        values, indices = F.adaptive_max_pool3d(x, output_size, return_indices=True)
        got_values, got_indices = export_onnx.adaptive_max_pool3d_by_gather(x, list(output_size))
        assert torch.equal(got_values, values) and torch.equal(got_indices, indices)


def test_an_exporter_error_names_the_operator_from_its_chain():
    try:
        try:
            raise ValueError("No ONNX function found for <OpOverload(op='aten.foo', overload='out')>. Failure")
        except ValueError as inner:
            raise RuntimeError("Failed to convert the exported program to an ONNX model.") from inner
    except RuntimeError as e:
        assert export_onnx.unsupported_op(e) == "aten.foo.out"
    translating = RuntimeError("Error when translating node %bar : target=torch.ops.aten.bar.default args")
    assert export_onnx.unsupported_op(translating) == "aten.bar.default"
    assert export_onnx.unsupported_op(RuntimeError("something else")) is None
