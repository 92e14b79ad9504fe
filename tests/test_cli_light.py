"""Light commands answer without loading torch; the torchvision shim lets timm import on a CPU torch."""

import os
import subprocess
import sys

from tests.conftest import run_cli


def test_help_lists_commands_and_does_not_import_torch():
    code = "import sys; from delbench.cli import main; main(['--help']); assert 'torch' not in sys.modules"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "evaluate" in out.stdout and "normdel" in out.stdout


def test_normdel_command_does_not_import_torch():
    code = (
        "import sys; from delbench.cli import main; rc = main(['normdel', '--miou', '0.7938', '--ratio', '0.05']);"
        "assert rc == 0 and 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.6803"


def test_normdel_out_of_range_is_a_clear_error():
    out = run_cli("normdel", "--miou", "0.5", "--ratio", "0")
    assert out.returncode == 2 and "retained fraction" in out.stderr and "Traceback" not in out.stderr


def test_unknown_command():
    out = run_cli("frobnicate")
    assert out.returncode == 2 and "unknown command" in out.stderr


def test_timm_imports_through_the_shim():
    code = (
        "from evaluator.compat import import_timm; timm = import_timm();"
        "from timm.models.vision_transformer import Block; import torch;"
        "b = Block(16, 2); print(tuple(b(torch.zeros(1, 4, 16)).shape))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 4, 16)"


def test_a_command_whose_libraries_are_missing_says_so_in_one_line(tmp_path):
    """An install without a command's libraries (here: fastapi hidden) gets one line naming the package and
    the extra to install, exit 1, no traceback."""
    blocker = tmp_path / "fastapi.py"
    blocker.write_text("raise ModuleNotFoundError('No module named fastapi', name='fastapi')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "delbench", "serve"], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "delbench serve: error: needs the Python package 'fastapi', which is not installed: pip install 'delbench[server]'"
    )


def test_an_image_without_git_records_the_code_version_it_was_built_with():
    """The Dockerfile passes DELBENCH_CODE_VERSION (its image holds no .git); results record it."""
    code = "from evaluator.version import code_version; print(code_version())"
    env = {**os.environ, "DELBENCH_CODE_VERSION": "0.1.0+g0123456789ab"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.strip() == "0.1.0+g0123456789ab"


def test_a_runtime_error_is_one_line_with_one_prefix_and_exit_1(tmp_path):
    out = run_cli("evaluate", "--pool", str(tmp_path / "nowhere"), "--no-pretrain")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith(
        "delbench evaluate: error: "
    )
    usage = run_cli("evaluate", "--pool", str(tmp_path), "--no-pretrain", "--ids", "x.txt")
    assert usage.returncode == 2 and "give exactly one of --ids FILE or --no-pretrain" in usage.stderr
