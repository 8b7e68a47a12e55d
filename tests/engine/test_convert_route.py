"""From a Swin checkpoint to an STViT model, as configs/convert/ does it: the Swin trained here
initialises the STViT-R model, which is tested before any fine-tuning and then fine-tuned."""
import json

import torch

from stvit_video.cli import main
from stvit_video.engine.checkpoint import load_for_inference

from tests.helpers.colour_data import tiny_overrides


def test_a_trained_swin_becomes_an_stvit_r_tested_before_and_after_fine_tuning(colour_data, tmp_path, capfd):
    swin_dir, before_dir, after_dir = tmp_path / "swin", tmp_path / "before", tmp_path / "after"
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, swin_dir, "MODEL.ARCH", "swin3d_tiny",
                                                         "SOLVER.MAX_EPOCH", 2, "TEST.ENABLE", False)]) == 0
    swin = swin_dir / "checkpoints/last.pyth"
    convert = ["MODEL.ARCH", "stvit_r_swin3d_tiny_perframe", "TRAIN.CHECKPOINT_FILE_PATH", str(swin),
               "TRAIN.CHECKPOINT_TYPE", "native", "MODEL.NUM_CLASSES", "0"]
    capfd.readouterr()
    # before fine-tuning: the converted model, named as such in the report
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, before_dir, *convert, "TRAIN.ENABLE", False,
                                                         "TEST.ALLOW_RANDOM_INIT", True)]) == 0
    report = json.loads((before_dir / "eval/report.json").read_text())
    meta = report["meta"]
    assert meta["checkpoint"]["initial_weights"] and meta["checkpoint"]["path"] == str(swin)
    assert meta["model"]["arch"] == "stvit_r_swin3d_tiny_perframe"
    # the default layer scales (1e-5, for training from scratch) mute the converted blocks: said in the log
    assert "start with layer scales of 1e-05 (STVIT.LAYER_SCALE_INIT), which mutes them" in capfd.readouterr().out
    # one epoch of fine-tuning, as configs/convert/ does it: the STViT-R blocks start from the Swin's
    # (q and kv from its qkv) at full strength
    assert main(["--cfg", "kinetics400", *tiny_overrides(colour_data, after_dir, *convert, "SOLVER.MAX_EPOCH", 1,
                                                         "TEST.ENABLE", False, "STVIT.LAYER_SCALE_INIT", 1.0)]) == 0
    assert "which mutes them" not in capfd.readouterr().out
    tuned = load_for_inference(after_dir / "checkpoints/last.pyth")
    assert tuned.arch["name"] == "stvit_r_swin3d_tiny_perframe" and tuned.arch["kwargs"]["num_classes"] == 3
    swin_sd = load_for_inference(swin).state_dict
    # stage 1 is not replaced: still close to the Swin's after one short epoch; replaced q rows moved
    q = tuned.state_dict["layers.2.blocks.1.attn.q.weight"]
    assert q.shape == swin_sd["layers.2.blocks.1.attn.qkv.weight"][:64].shape
    assert (tuned.state_dict["layers.2.blocks.1.layer_scale_1"] - 1).abs().max() < 0.05
    assert torch.allclose(tuned.state_dict["layers.0.blocks.0.mlp.fc1.weight"], swin_sd["layers.0.blocks.0.mlp.fc1.weight"],
                          atol=0.05)
