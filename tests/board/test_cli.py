"""The participant CLI against a real server: uvicorn and a Celery worker process on the embedded stack
(SQLite + filesystem broker), the micro tier. `delbench submit` uploads, follows with a progress bar until
the evaluation ends and prints the results the API holds."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from app.models import Submission
from tests.board.conftest import add_team, beat, finish, start_pretraining, submit
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


def test_follow_shows_the_servers_place_and_eta(stack, pool_dir, pool_ids, tmp_path):
    """While the upload waits behind another team's running evaluation, the bar says what the server says:
    its place in the queue and the server's estimate, not one of tqdm's own."""
    seeded = seed_phase(stack, pool_dir)
    other, _ = add_team(stack, "team-b")
    finish(stack, submit(stack, other, pool_ids[:24], "done"), 0.6)  # the history the estimate reads
    start_pretraining(stack, submit(stack, other, pool_ids[:48], "running"), 0.5)
    beat(stack, "gpu0@host")  # a GPU worker alive (this test runs none, so the upload keeps waiting)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(pool_ids[:96]) + "\n")
    port = free_port()
    env = {"DELBENCH_SERVER": f"http://127.0.0.1:{port}", "DELBENCH_TOKEN": seeded.token}
    # the test's one heartbeat must stay "alive" while a loaded machine starts the CLI (3 beats of 60 s)
    api = start_server({**stack.env, "DELBENCH_RECONCILE_SECONDS": "60"}, port, tmp_path)
    err = tmp_path / "follow.err"
    try:
        with err.open("w") as stderr:
            follow = subprocess.Popen(
                delbench_cmd("submit", str(ids), "--phase", "dev", "--poll", "0.3"),
                cwd=REPO, env=child_env(env), stdout=subprocess.PIPE, stderr=stderr, text=True,
                # a suite started in the background inherits SIGINT ignored, and so would the CLI
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )  # fmt: skip
            deadline = time.monotonic() + 120  # generous: a loaded machine starts the CLI slowly
            while (
                "done in ~" not in err.read_text() and time.monotonic() < deadline and follow.poll() is None
            ):
                time.sleep(0.2)
            follow.send_signal(signal.SIGINT)
            out, _ = follow.communicate(timeout=90)
        shown = err.read_text()
        assert "place 1 in the queue" in shown and "starts in ~" in shown and "done in ~" in shown, shown
        assert "#" in shown and "waiting" in shown
        assert follow.returncode == 130 and "the evaluation goes on" in shown and "Traceback" not in shown
        sid = int(out.split()[1])
        status = cli("status", str(sid), env=env)
        assert status.returncode == 0 and "place 1 in the queue, starts in ~" in status.stdout
        withdrawn = cli("cancel", str(sid), "--reason", "wrong file", env=env)
        assert withdrawn.returncode == 0 and f"submission {sid} cancelled: wrong file" in withdrawn.stdout
        again = cli("cancel", str(sid), env=env)
        assert (
            again.returncode == 1 and "has already ended" in again.stderr and "Traceback" not in again.stderr
        )
    finally:
        api.stop()
