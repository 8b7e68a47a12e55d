"""Import boundaries: which modules a piece of code leaves loaded, in a fresh interpreter.

``modules_loaded_by("import stvit_video", ("torch",))`` is ``[]`` when importing the package
loads no torch; the tests of the light entry points (the package, the config package, the
shared video formats, data_prep's API) assert that with it.
"""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]


def modules_loaded_by(code: str, watched: Sequence[str]) -> list[str]:
    """Run ``code`` at the repository root in a new interpreter; the loaded modules, sorted, that
    are one of ``watched`` or inside one (``"torch"`` also matches ``torch.nn``)."""
    # only sys (always loaded) is imported after ``code``, so the probe adds nothing to the answer
    probe = (f"{code}\nimport sys\n"
             f"print(sorted(m for m in sys.modules if any(m == w or m.startswith(w + '.') for w in {tuple(watched)!r})))")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])
