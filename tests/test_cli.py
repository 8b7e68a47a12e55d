"""The run_net command line: --list-configs, --cfg names, overrides, --summary, --flops, jobs."""
import subprocess
import sys
from pathlib import Path

import pytest

from stvit_video.cli import main, parse_args

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["DATA.NUM_FRAMES", "4", "DATA.TEST_CROP_SIZE", "64", "DATA.TRAIN_CROP_SIZE", "64",
         "DATA.TRAIN_JITTER_SCALES", "[64, 80]", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3"]


def test_trailing_and_opts_overrides_are_both_accepted():
    args = parse_args(["--cfg", "kinetics400", "SOLVER.BASE_LR", "0.5", "--summary", "--opts", "RNG_SEED", "4"])
    assert args.cfg_file == "kinetics400" and args.summary
    assert args.overrides == ["SOLVER.BASE_LR", "0.5", "RNG_SEED", "4"]
    args = parse_args(["--cfg", "kinetics400", "--opts", "SOLVER.BASE_LR", "0.5"])
    assert args.overrides == ["SOLVER.BASE_LR", "0.5"]


def test_unknown_flag_and_missing_cfg_are_usage_errors(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--cfg", "kinetics400", "--sumary"])
    assert "unknown option --sumary" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--cfg is required" in capsys.readouterr().err


def test_list_configs_prints_one_line_per_config(capsys):
    assert main(["--list-configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert "kinetics400" in names and "kinetics400/stvit_r_swin_t_perframe_32x2" in names
    assert all(len(line.split(None, 1)) == 2 for line in lines), "every config needs a description"


def test_summary_prints_structure_and_parameter_count(capsys):
    assert main(["--cfg", "kinetics400", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "STViTStage3D(" in out and "SemanticBlock(" in out
    assert "model: stvit_r_swin3d_tiny_perframe (SwinTransformer3D)" in out
    assert "total          28.010 M parameters" in out


def test_flops_prints_per_view_per_video_and_stages(capsys):
    assert main(["--cfg", "kinetics400/swin_t_32x2", "--flops", *SMALL]) == 0
    out = capsys.readouterr().out
    per_view = float(next(l for l in out.splitlines() if l.startswith("per view")).split()[2])
    per_video = float(next(l for l in out.splitlines() if l.startswith("per video")).split()[2])
    assert per_view > 0 and per_video == pytest.approx(6 * per_view, abs=0.01)
    assert "2 clips x 3 crops = 6 views" in out
    for stage in ("stage 1", "stage 2", "stage 3", "stage 4"):
        assert stage in out
    assert "not counted: softmax, GELU" in out


def test_config_errors_exit_2_with_one_line(capsys):
    assert main(["--cfg", "kinetics400", "SOLVER.BASE_LRR", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown config key SOLVER.BASE_LRR in the command-line overrides; did you mean SOLVER.BASE_LR?"


def test_a_job_without_data_fails_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--cfg", "kinetics400", "OUTPUT_DIR", str(out), "DATA.PATH_TO_DATA_DIR", str(tmp_path / "k400")]) == 2
    assert "error: no train list: neither" in capsys.readouterr().err
    assert not out.exists()  # no output folder, no config dump, no log for a run that never started


def test_job_with_nothing_enabled_succeeds(tmp_path):
    assert main(["--cfg", "kinetics400", "OUTPUT_DIR", str(tmp_path), "TRAIN.ENABLE", "False",
                 "TEST.ENABLE", "False"]) == 0


@pytest.mark.parametrize("launcher", [["tools/run_net.py"], ["-m", "stvit_video"]])
def test_entry_points_run(launcher):
    result = subprocess.run([sys.executable, "-W", "ignore", *launcher, "--list-configs"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "kinetics400" in result.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "stvit-run"
    assert script.exists()
    result = subprocess.run([str(script), "--list-configs"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "kinetics400" in result.stdout


def test_summary_loads_the_configured_checkpoint_and_logs_fresh_parameters(tmp_path, capsys):
    from stvit_video.config import load_config
    from stvit_video.models import build_model

    swin_cfg = load_config("kinetics400/swin_t_32x2", ["MODEL.NUM_CLASSES", "5"])
    swin = build_model(swin_cfg)
    sd = {("cls_head.fc_cls." + k[8:]) if k.startswith("head.fc.") else "backbone." + k: v
          for k, v in swin.state_dict().items()}
    path = tmp_path / "video_swin_t.pth"
    import torch

    torch.save({"state_dict": sd}, path)
    assert main(["--cfg", "kinetics400", "--summary", "MODEL.NUM_CLASSES", "5",
                 "TRAIN.CHECKPOINT_FILE_PATH", str(path), "TRAIN.CHECKPOINT_TYPE", "video_swin"]) == 0
    out = capsys.readouterr().out
    assert "freshly initialised: layers.2.blocks.1.layer_scale_1 (STViT layer scale)" in out
    assert "checkpoint key not used: layers.2.blocks.1.attn.relative_position_bias_table" in out


def test_a_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    assert main(["--cfg", "kinetics400", "--summary", "TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "x.pth")]) == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint file {tmp_path / 'x.pth'} does not exist"


@pytest.mark.parametrize("command, expected", [
    (["tools/predict.py"], "CLIPSxCROPS"), (["stvit-predict"], "CLIPSxCROPS"),
    (["tools/export.py"], "torch.export"), (["stvit-export"], "torch.export")])
def test_predict_and_export_entry_points_answer_help(command, expected):
    if command[0].startswith("stvit-"):
        command = [str(Path(sys.executable).parent / command[0])]
    else:
        command = [sys.executable, "-W", "ignore", *command]
    result = subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
