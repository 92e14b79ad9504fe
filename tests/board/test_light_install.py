"""`pip install delbench` (no extra) is the participant client alone: in a fresh virtual environment it has
no torch and no server code's libraries, and `delbench submit | status | leaderboard` work against a real
server; a command that needs an extra says which."""

from __future__ import annotations

import shutil
import subprocess
import venv

import pytest

from tests.board.conftest import finish, seed_phase, submit
from tests.server.conftest import REPO, free_port
from tests.server.procs import start_server

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client-venv")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    # from a copy of the sources: pip builds in the tree it is given, and the checkout must stay clean
    source = tmp_path_factory.mktemp("source") / "delbench"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "data", "runs", "build", "*.egg-info",
                                                                "__pycache__", ".*_cache"))  # fmt: skip
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "bin"


def test_the_base_install_is_a_working_client_without_torch(stack, client_venv, pool_dir, pool_ids, tmp_path):
    python = client_venv / "python"
    missing = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert missing.returncode != 0  # no torch in the client's environment
    seeded = seed_phase(stack, pool_dir)
    finish(stack, submit(stack, seeded.team_id, pool_ids[:48], "on the board"), 0.7)
    port = free_port()
    api = start_server(stack.env, port, tmp_path)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(pool_ids[:24]) + "\n")
    env = {"PATH": f"{client_venv}:/usr/bin:/bin", "DELBENCH_SERVER": f"http://127.0.0.1:{port}",
           "DELBENCH_TOKEN": seeded.token}  # fmt: skip

    def delbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(client_venv / "delbench"), *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)  # fmt: skip

    try:
        board = delbench("leaderboard", "--phase", "dev")
        assert board.returncode == 0 and "on the board" in board.stdout, board.stderr
        sent = delbench("submit", str(ids), "--phase", "dev", "--method", "light", "--no-follow")
        assert sent.returncode == 0 and "accepted" in sent.stdout, sent.stderr
        listed = delbench("status")
        assert listed.returncode == 0 and "light" in listed.stdout
        # the migrations ship in the package (a non-editable install migrates from site-packages)
        shipped = subprocess.run([str(python), "-c", "import importlib.resources as r, sys; "
                                  "print(*sorted(p.name for p in r.files('migrations').joinpath('versions').iterdir() "
                                  "if p.name.endswith('.py')))"], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
        assert shipped.stdout.split() == sorted(
            p.name for p in (REPO / "migrations" / "versions").glob("*.py")
        )
        needs = delbench("evaluate", "--pool", str(pool_dir), "--no-pretrain")
        assert needs.returncode == 1 and "pip install 'delbench[evaluator]'" in needs.stderr
        assert "Traceback" not in needs.stderr
    finally:
        api.stop()
