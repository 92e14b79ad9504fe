"""Two worker "hosts" that share nothing but the database, the broker and an artifact store: each has its own
data folder (its own encoder cache). One pretrains and is stopped; the other, which never saw that
encoder, fetches it from the store for the finetunes, and the result is the one-process reference."""

from __future__ import annotations

import shutil
import signal

import httpx
import pytest

from app.models import EvaluationStage
from tests.server.conftest import free_port, make_stack, seed_phase
from tests.server.procs import poll_submission, start_server, start_worker, wait_until
from tests.server.test_end_to_end import assert_board_matches

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_finetunes_on_another_host_fetch_the_encoder_from_the_store(
    postgres, redis_prefix, pool_dir, every_10th, tmp_path
):
    stack = make_stack("production", tmp_path, postgres.create(), redis_prefix + "hosts:")
    seeded = seed_phase(stack, pool_dir)
    ids_file, reference = every_10th
    shared = tmp_path / "artifact-store"
    host_env = {
        host: {**stack.env, "DELBENCH_DATA_DIR": str(tmp_path / host), "DELBENCH_ARTIFACT_STORE": str(shared)}
        for host in ("host-a", "host-b")
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    first = second = None
    try:
        headers = {"Authorization": f"Bearer {seeded.token}"}
        with open(ids_file, "rb") as f:
            r = httpx.post(f"{base}/api/v1/phases/dev/submissions", headers=headers,
                           files={"file": ("every-10th.txt", f)}, timeout=30)  # fmt: skip
        sid = r.json()["id"]
        first = start_worker(host_env["host-a"], "host-a", tmp_path)

        def pretrained() -> bool:
            with stack.session() as session:
                stage = session.query(EvaluationStage).filter_by(submission_id=sid, name="pretrain").one()
                return stage.status.value == "succeeded"

        wait_until(pretrained, timeout=180, what="host a's pretraining", proc_logs=[first])
        first.stop(signal.SIGTERM, timeout=60)
        shutil.rmtree(tmp_path / "host-a")  # that host is gone, and its cache with it
        second = start_worker(host_env["host-b"], "host-b", tmp_path)
        done = poll_submission(base, seeded.token, sid, until={"succeeded"}, timeout=240, procs=[api, second])
        with stack.session() as session:
            ran = {s.name: s.worker for s in session.query(EvaluationStage).filter_by(submission_id=sid)}
        assert ran["pretrain"].startswith("host-a@")
        assert any(w.startswith("host-b@") for n, w in ran.items() if n.startswith("finetune:"))
        assert list((tmp_path / "host-b").glob("artifacts/cache/encoders/*/encoder.pt"))  # fetched there
        assert list(shared.glob("encoders/*/encoder.pt")) and list(
            shared.glob("encoders/*/encoder.pt.sha256")
        )
        board = httpx.get(f"{base}/api/v1/phases/dev/leaderboard", timeout=10).json()
        assert done["status"] == "succeeded"
        assert_board_matches(board, sid, reference)  # the one-process protocol's numbers
    finally:
        for proc in (second, first, api):
            if proc is not None:
                proc.stop()
