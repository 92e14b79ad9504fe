"""The participant CLI against a real server: uvicorn and a Celery worker process on the embedded stack
(SQLite + filesystem broker), the micro tier. `delbench submit` uploads, follows with a progress bar until
the evaluation ends and prints the results the API holds."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from app.models import Submission
from tests.server.conftest import REPO, child_env, delbench_cmd, free_port, seed_phase
from tests.server.procs import start_server, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        delbench_cmd(*args), cwd=REPO, env=child_env(env), capture_output=True, text=True, timeout=timeout
    )


def test_submit_follows_the_evaluation_to_its_results(stack, pool_dir, pool_ids, tmp_path):
    seeded = seed_phase(stack, pool_dir)
    ids = tmp_path / "every8th.txt"
    ids.write_text("\n".join(pool_ids[::8]) + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"DELBENCH_SERVER": base, "DELBENCH_TOKEN": seeded.token}
    api = start_server(stack.env, port, tmp_path)
    worker = start_worker(stack.env, "w1", tmp_path)
    try:
        done = cli("submit", str(ids), "--phase", "dev", "--method", "every 8th", "--poll", "0.3", env=env)
        assert done.returncode == 0, done.stdout + done.stderr + worker.tail()
        sid = int(done.stdout.split()[1])
        sub = httpx.get(
            f"{base}/api/v1/submissions/{sid}", headers={"Authorization": f"Bearer {seeded.token}"}
        ).json()
        assert sub["status"] == "succeeded" and sub["method"] == "every 8th"
        with stack.session() as session:  # the CLI names its upload, so a retry of it cannot count twice
            assert session.get(Submission, sid).idempotency_key.startswith("delbench-cli-")
        assert "100%" in done.stderr  # the progress bar reached its end
        for name, score in sub["results"]["datasets"].items():  # the printed table is the server's results
            assert f"{score['miou'] * 100:.2f}" in done.stdout and name in done.stdout
        assert f"{sub['results']['mean_normdel']:.4f}" in done.stdout

        status = cli("status", str(sid), env=env)
        assert status.returncode == 0 and "status succeeded" in status.stdout
        listing = cli("status", "--phase", "dev", env=env)
        assert listing.stdout.splitlines()[2].split()[:2] == [str(sid), "dev"]
        board = cli("leaderboard", "--phase", "dev", env={"DELBENCH_SERVER": base})
        assert board.returncode == 0 and "every 8th" in board.stdout
        assert f"{sub['results']['mean_normdel']:.4f}" in board.stdout

        bad = tmp_path / "bad.txt"
        bad.write_text(pool_ids[0] + "\nno/such/frame\n")
        refused = cli("submit", str(bad), "--phase", "dev", env=env)
        assert refused.returncode == 1
        assert (
            "line 2: unknown sample ID 'no/such/frame'" in refused.stderr and "[unknown_id]" in refused.stderr
        )
        wrong = cli("status", env={"DELBENCH_SERVER": base, "DELBENCH_TOKEN": "dlb_nope"})
        assert wrong.returncode == 1 and "(401)" in wrong.stderr and "token_invalid" in wrong.stderr
    finally:
        worker.stop()
        api.stop()
    gone = cli("leaderboard", "--phase", "dev", env={"DELBENCH_SERVER": base})
    assert gone.returncode == 1 and f"cannot reach the DELBench server at {base}" in gone.stderr
    missing = cli("status", env={"DELBENCH_SERVER": base})
    assert missing.returncode == 2 and "DELBENCH_TOKEN" in missing.stderr
