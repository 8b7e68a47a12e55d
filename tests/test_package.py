"""Install-level behaviour: import boundaries, the pytorchvideo alias, README <-> CI."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_pytorchvideo_transforms_needs_the_alias_and_works_after_import_stvit_video():
    without = _python("import pytorchvideo.transforms")
    assert without.returncode != 0
    assert "torchvision.transforms.functional_tensor" in without.stderr
    with_alias = _python(
        "import stvit_video, sys\n"
        "import pytorchvideo.transforms\n"
        "assert sys.modules['torchvision.transforms.functional_tensor'] is "
        "sys.modules['torchvision.transforms._functional_tensor']\n"
        "print('ok')")
    assert with_alias.returncode == 0, with_alias.stderr
    assert with_alias.stdout.strip() == "ok"


def test_alias_is_a_no_op_when_called_again():
    from stvit_video.compat import alias_torchvision_functional_tensor

    import stvit_video  # noqa: F401  (installs the alias)
    assert alias_torchvision_functional_tensor() is False


def test_all_required_packages_import():
    result = _python("import stvit_video, timm, torchvision, pytorchvideo.transforms, decord, av, fvcore, "
                     "simplejson; print('ok')")
    assert result.returncode == 0, result.stderr


def test_models_import_without_data_or_flop_dependencies():
    result = _python(
        "import sys\n"
        "import stvit_video.models\n"
        "m = stvit_video.models.SwinTransformer3D(num_classes=3, depths=(1, 1), num_heads=(1, 2), embed_dim=8)\n"
        "heavy = sorted(n for n in ('decord', 'av', 'pytorchvideo', 'fvcore') if n in sys.modules)\n"
        "print(','.join(heavy) or 'none')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 2, "README must give exactly two set-up commands"
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1
    assert test_command[0] in ci.splitlines()
    assert "rm -rf .venv" in ci  # a fresh venv every run
