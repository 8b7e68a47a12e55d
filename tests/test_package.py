"""Install-level behaviour: import boundaries, the pytorchvideo alias, README <-> CI."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.imports import modules_loaded_by

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_import_stvit_video_is_light_and_patches_nothing():
    watched = ("torch", "torchvision", "torchvision.transforms.functional_tensor")
    assert modules_loaded_by("import stvit_video", watched) == []


def test_pytorchvideo_needs_the_alias_which_the_transforms_apply_when_they_first_need_it():
    without = _python("import pytorchvideo.transforms")
    assert without.returncode != 0
    assert "torchvision.transforms.functional_tensor" in without.stderr
    lazily = _python(
        "import sys\n"
        "from stvit_video.datasets.transforms import TrainTransform\n"
        "assert 'torchvision.transforms.functional_tensor' not in sys.modules  # nothing patched yet\n"
        "TrainTransform(crop_size=32, jitter_scales=(32, 40), rand_augment='rand-m7-n2')\n"
        "assert sys.modules['torchvision.transforms.functional_tensor'] is "
        "sys.modules['torchvision.transforms._functional_tensor']\n"
        # and then every required package imports (one interpreter start for both checks)
        "import stvit_video, timm, torchvision, pytorchvideo.transforms, decord, av, fvcore, simplejson\n"
        "print('ok')")
    assert lazily.returncode == 0, lazily.stderr
    assert lazily.stdout.strip() == "ok"


def test_alias_is_a_no_op_when_called_again():
    from stvit_video.compat import alias_torchvision_functional_tensor

    alias_torchvision_functional_tensor()
    assert alias_torchvision_functional_tensor() is False


def test_list_configs_and_help_answer_without_torch():
    for flag in ("--list-configs", "--help"):
        result = _python("import runpy, sys\n"
                         f"sys.argv = ['run_net.py', '{flag}']\n"
                         "try:\n    runpy.run_module('stvit_video', run_name='__main__')\n"
                         "except SystemExit as e:\n    assert not e.code, e.code\n"
                         "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)")
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip().endswith("NO TORCH"), flag


def test_the_wheel_ships_the_configs_and_runs_from_anywhere(tmp_path):
    """Installed as users install it (a wheel, not editable), from another directory."""
    wheel_dir, target, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # build from a copy: setuptools leaves build/ and *.egg-info in the source folder
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md", "configs", "stvit_video", "data_prep"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheel_dir.glob("stvit_video-*.whl")
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = target / "bin" / "stvit-run"

    def run(*args):
        result = subprocess.run([sys.executable, str(script), *args], cwd=elsewhere, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "kinetics400/swin_t_32x2" in run("--list-configs")
    flops = run("--cfg", "kinetics400", "--flops", "DATA.NUM_FRAMES", "4", "DATA.TEST_CROP_SIZE", "64",
                "SWIN.EMBED_DIM", "24")
    assert "per view" in flops and "stvit_r_swin3d_tiny_perframe" in flops
    where = subprocess.run([sys.executable, "-c", "import stvit_video.config as c; print(c.configs_root())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(target / "stvit_video" / "configs")
    assert not (elsewhere / "output").exists()


def test_models_import_without_data_or_flop_dependencies():
    code = ("import stvit_video.models\n"
            "m = stvit_video.models.SwinTransformer3D(num_classes=3, depths=(1, 1), num_heads=(1, 2), embed_dim=8)")
    assert modules_loaded_by(code, ("decord", "av", "pytorchvideo", "fvcore")) == []


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2, "README must give exactly two set-up commands"
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1
    assert test_command[0] in ci.splitlines()
    assert "rm -rf .venv" in ci  # a fresh venv every run
