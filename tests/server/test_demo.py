"""`delbench demo` itself, on its embedded defaults (SQLite + filesystem broker + a real worker process),
driven by the curl examples of docs/server.md: what the docs show is what the server does."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import MICRO_TIER, REPO, delbench_cmd, free_port
from tests.server.procs import Proc, poll_submission, wait_until
from tests.server.test_end_to_end import assert_board_matches

pytestmark = pytest.mark.slow

SERVER_DOC = REPO / "docs" / "server.md"
BOARD_DOC = REPO / "docs" / "board.md"


def documented_blocks(doc: Path = SERVER_DOC) -> dict[str, str]:
    """The ```bash blocks of a doc whose first line is `# tested: NAME`, by name, in order."""
    blocks = re.findall(r"```bash\n# tested: (\S+)\n(.*?)```", doc.read_text(), flags=re.S)
    return dict(blocks)


def run_block(script: str, cwd, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{script}\n{done.stderr}"
    return done.stdout


def json_values(text: str) -> list:
    """Every JSON document in `text`, in order (curl prints its answers back to back); other text skipped."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at] in "{[":
            value, at = decoder.raw_decode(text, at)
            values.append(value)
        else:
            at += 1
    return values


def printed_token(demo: Proc) -> str:
    """The participant token the demo's banner shows, once it has shown it."""
    return wait_until(
        lambda: (m := re.search(r"participant token: (dlb_\S+)", demo.tail(100_000))) and m.group(1),
        timeout=120,
        what=f"the token in {demo.name}'s banner",
        proc_logs=[demo],
    )


def board_rows(base: str) -> list[dict]:
    return httpx.get(f"{base}/api/v1/phases/demo/leaderboard").json()["rows"]


def test_docs_list_the_tested_examples():
    assert list(documented_blocks()) == ["upload", "status", "mine", "leaderboard", "phases", "error"]
    assert list(documented_blocks(BOARD_DOC)) == [
        "admin-phases", "admin-submissions", "admin-baselines", "admin-teams", "admin-operations",
    ]  # fmt: skip


def test_demo_runs_the_documented_curl_examples(tmp_path, pool_dir, pool_ids, every_10th):
    data = tmp_path / "data" / "demo"
    port = free_port()
    args = [
        "demo",
        "--tier",
        str(MICRO_TIER),
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--pool-size",
        "480",
    ]
    demo = Proc("demo", delbench_cmd(*args), {}, tmp_path, cwd=tmp_path)  # where the docs' paths start
    try:
        token = printed_token(demo)
        base = f"http://127.0.0.1:{port}"
        env = {"PATH": "/usr/bin:/bin", "DELBENCH_URL": base, "TOKEN": token}
        blocks = documented_blocks()
        shown = demo.tail(100_000)
        admin = re.search(r"admin token:\s+(dlb_\S+)", shown).group(1)
        health = httpx.get(f"{base}/api/v1/admin/health", headers={"Authorization": f"Bearer {admin}"})
        assert (
            health.status_code == 200 and health.json()["workers_alive"] == 1
        )  # the printed admin token works
        after = shown[shown.index("participant token:") :]
        assert "[tasks]" not in after  # the banner comes after the worker's start-up (Celery lists its tasks)

        accepted = json.loads(run_block(blocks["upload"], tmp_path, env))
        assert accepted["status"] == "queued" and accepted["n"] == 48 and accepted["retained_fraction"] == 0.1
        sid = accepted["id"]
        # the docs name the ID an upload right after the start gets; here the baselines may be first
        assert "export ID=4 " in blocks["status"]
        status = blocks["status"].replace("export ID=4 ", f"export ID={sid} ")
        assert json.loads(run_block(status, tmp_path, env))["id"] == sid
        assert [s["id"] for s in json.loads(run_block(blocks["mine"], tmp_path, env))] == [sid]
        error = json.loads(run_block(blocks["error"], tmp_path, env))["error"]
        assert (error["rule"], error["line"], error["id"]) == ("unknown_id", 2, "no/such/frame")

        done = poll_submission(base, token, sid, until={"succeeded"}, timeout=240, procs=[demo])
        # the reference rows: a uniform draw and meddel at the same R (its features from the full-pool
        # encoder the demo pretrains beside the worker), and the full pool, which reuses that encoder
        wait_until(
            lambda: {r["method"] for r in board_rows(base)} >= {"random 5%", "meddel 5%", "full pool"},
            timeout=240, what="the demo's three baseline rows on the board", proc_logs=[demo],
        )  # fmt: skip
        assert "demo: baseline rows queued: random 5%, meddel 5%, full pool" in demo.tail(100_000)
        assert done["code_url"] == "https://example.org/every-10th"
        board = json.loads(run_block(blocks["leaderboard"], tmp_path, env))
        phases_and_health = run_block(blocks["phases"], tmp_path, env)
        assert '"slug":"demo"' in phases_and_health and '{"status":"ok","database":"ok"}' in phases_and_health

        # docs/board.md's organizer examples, as they are, with the printed admin token
        headers = {"Authorization": f"Bearer {token}"}
        spare = httpx.post(f"{base}/api/v1/phases/demo/submissions", headers=headers,
                           files={"file": ("spare.txt", "\n".join(pool_ids[:30]))}, data={"method": "spare"})  # fmt: skip
        admin_env = {**env, "ADMIN": admin, "SID": str(spare.json()["id"]),
                     "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # fmt: skip
        answers = {
            name: run_block(block, tmp_path, admin_env)
            for name, block in documented_blocks(BOARD_DOC).items()
        }
        phases = json_values(answers["admin-phases"])
        assert phases[0]["slug"] == "delbench" and phases[1]["slug"] == "test"
        assert {p["slug"] for p in phases[4]} == {"demo", "test"}
        cancelled, rerun = json_values(answers["admin-submissions"])[1:3]
        assert cancelled["changes"]["status"][1] == "cancelled" and rerun["requeued"] == [
            int(admin_env["SID"])
        ]
        created, disabled, rekeyed, teams = json_values(answers["admin-teams"])
        assert created["team"] == rekeyed["team"] == "team-x" and created["token"] != rekeyed["token"]
        assert disabled["changes"] == {"disabled": [False, True]} and "team-x" in {t["name"] for t in teams}
        assert "workers_alive" in json_values(answers["admin-operations"])[0]
        baseline = json_values(answers["admin-baselines"])[-1]
        admin_headers = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
        # the test phase's tier is not the demo's: its evaluations are not run here
        for extra in (baseline["id"], int(admin_env["SID"])):
            httpx.post(f"{base}/api/v1/admin/submissions/{extra}/cancel", headers=admin_headers,
                       json={"reason": "the test is over"})  # fmt: skip

        # Ctrl-C in the middle of a pretraining: a clean stop, and the next start resumes it. Its phase's
        # tier pretrains for 400 steps, so that the stop comes mid-way however fast the machine is.
        long_tier = json.loads(MICRO_TIER.read_text())
        long_tier["pretrain"]["samples_seen"] = 32 * 400
        (tmp_path / "micro-long.json").write_text(json.dumps(long_tier))
        made = httpx.post(f"{base}/api/v1/admin/phases", headers=admin_headers, json={
            "benchmark": "delbench", "slug": "long", "name": "Long pretraining", "pool_dir": str(data / "pool"),
            "tier": str(tmp_path / "micro-long.json"), "reason": "the interrupted pretraining"})  # fmt: skip
        assert made.status_code == 201, made.text
        part = "\n".join((data / "example-selection.txt").read_text().split()[:24])
        upload = httpx.post(f"{base}/api/v1/phases/long/submissions", headers=headers,
                            files={"file": ("half.txt", part)}, data={"method": "half"})  # fmt: skip
        interrupted = upload.json()["id"]

        def pretraining():
            sub = httpx.get(f"{base}/api/v1/submissions/{interrupted}", headers=headers).json()
            stages = {s["name"]: s for s in sub["stages"]}
            return sub["status"] != "queued" and stages["pretrain"]["status"] != "pending"

        wait_until(
            pretraining, timeout=120, what="the second upload's pretraining to start", proc_logs=[demo]
        )
        demo.popen.send_signal(signal.SIGINT)  # what Ctrl-C sends; children run in their own sessions
        assert demo.popen.wait(timeout=90) == 0
        stopped = demo.tail(100_000)
        assert "demo: stopped" in stopped
        assert "Traceback" not in stopped and "kill_job" not in stopped, stopped[-3000:]
        assert "stage handed back" in stopped  # it stopped at a step, not at the stage's end
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/healthz", timeout=2)
    finally:
        demo.stop()
    # the tokens are the demo's own, the same at every start, and `--info` prints them again
    info = subprocess.run(delbench_cmd(*args, "--info"), capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and token in info.stdout and admin in info.stdout
    again = Proc("demo-again", delbench_cmd(*args), {}, tmp_path)
    try:
        assert printed_token(again) == token
        resumed = poll_submission(base, token, interrupted, until={"succeeded"}, timeout=240, procs=[again])
        assert resumed["status"] == "succeeded"
        methods = [r["method"] for r in board_rows(base)]
        assert sorted(m for m in methods if m in {"random 5%", "meddel 5%", "full pool"}) == [
            "full pool",
            "meddel 5%",
            "random 5%",
        ]  # registered once: a restart adds no second set
        assert "pretraining the full-pool encoder" not in again.tail(100_000)
    finally:
        again.stop()
    # the demo generated the same pool as the suite's (same generator, seed, size and resolution: the
    # manifest carries every frame's sha256) and its example is every 10th frame: the reference applies
    assert (data / "pool" / "manifest.jsonl").read_bytes() == (pool_dir / "manifest.jsonl").read_bytes()
    assert (data / "example-selection.txt").read_text() == every_10th[0].read_text()
    assert_board_matches(board, sid, every_10th[1])
