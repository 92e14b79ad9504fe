"""The tree stays ruff-clean, and the layers keep their import rules (both configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_layers_hold():
    """import-linter's contracts ([tool.importlinter]): the evaluator imports no web, database or worker code;
    the API no worker code and no torch; the participant client neither torch nor the server."""
    linter = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(linter)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
