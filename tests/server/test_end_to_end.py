"""The whole service, for real: uvicorn and Celery worker processes, a broker and a database, a selection
uploaded over HTTP, and the leaderboard compared with what `delbench evaluate` gives for that selection."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from app.models import EvaluationStage, Result, Submission, WorkerHeartbeat
from tests.server.conftest import free_port, make_stack, seed_phase
from tests.server.procs import poll_submission, start_server, start_worker

pytestmark = pytest.mark.slow


def assert_board_matches(board: dict, submission_id: int, reference: dict) -> None:
    row = next(r for r in board["rows"] if r["submission_id"] == submission_id)
    assert set(row["datasets"]) == set(reference["datasets"]) and len(row["datasets"]) == 8
    for name, ref in reference["datasets"].items():
        assert row["datasets"][name]["miou"] == pytest.approx(ref["miou"], abs=1e-6), name
        assert row["datasets"][name]["normdel"] == pytest.approx(ref["normdel"], abs=1e-6), name
    assert row["mean_normdel"] == pytest.approx(reference["mean_normdel"], abs=1e-6)
    assert row["mean_miou"] == pytest.approx(reference["mean_miou"], abs=1e-6)
    assert row["n"] == reference["n_selected"]
    assert row["retained_fraction"] == pytest.approx(reference["retained_fraction"])


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_postgres_end_to_end(postgres, redis_prefix, pool_dir, pool_ids, every_10th, tmp_path):
    stack = make_stack("production", tmp_path, postgres.create(), redis_prefix + "e2e:")
    seeded = seed_phase(stack, pool_dir)
    ids_file, reference = every_10th
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    worker = None
    try:
        headers = {"Authorization": f"Bearer {seeded.token}"}
        url = f"{base}/api/v1/phases/{seeded.phase_slug}/submissions"
        with open(ids_file, "rb") as f:
            r = httpx.post(
                url,
                headers=headers,
                files={"file": ("every-10th.txt", f)},
                data={"method": "every 10th frame"},
                timeout=30,
            )
        assert r.status_code == 202, r.text
        sid = r.json()["id"]
        # a second one whose stored file is damaged before any worker sees it: it must fail, visibly
        r = httpx.post(url, headers=headers, files={"file": ("x.txt", pool_ids[0].encode())}, timeout=30)
        broken = r.json()["id"]
        with stack.session() as session:
            session.get(Submission, broken).selection_data = b"tampered\n"
        worker = start_worker(stack.env, "w1", tmp_path)
        failed = poll_submission(
            base, seeded.token, broken, until={"failed"}, timeout=120, procs=[api, worker]
        )
        assert failed["error"].startswith("validate: ValueError: stored selection file")
        assert "sha256" in failed["log_tail"] and failed["stages"][0]["log_tail"] == failed["log_tail"]
        done = poll_submission(base, seeded.token, sid, until={"succeeded"}, timeout=240, procs=[api, worker])
        assert done["progress"] == 1.0 and done["error"] is None
        assert {s["status"] for s in done["stages"]} == {"succeeded"}
        # the same selection again (JSON this time): the cached encoder is reused, the scores are the same
        r = httpx.post(
            url,
            headers=headers,
            files={"file": ("again.json", json.dumps(pool_ids[::10]).encode())},
            timeout=30,
        )
        again = poll_submission(
            base, seeded.token, r.json()["id"], until={"succeeded"}, timeout=240, procs=[api, worker]
        )
        board = httpx.get(f"{base}/api/v1/phases/{seeded.phase_slug}/leaderboard", timeout=10).json()
        assert [row["submission_id"] for row in board["rows"]] == [
            sid,
            again["id"],
        ]  # ties: the earlier first
        assert again["results"] == done["results"]
    finally:
        if worker is not None:
            worker.stop()
        api.stop()
    assert_board_matches(board, sid, reference)
    with stack.session() as session:
        assert (
            session.scalar(select(func.count()).select_from(Result).where(Result.submission_id == sid)) == 8
        )
        pretrain = session.scalar(
            select(EvaluationStage).where(
                EvaluationStage.submission_id == sid, EvaluationStage.name == "pretrain"
            )
        )
        assert pretrain.attempts == 1 and pretrain.detail["cache_hit"] is False
        cached = session.scalar(
            select(EvaluationStage).where(
                EvaluationStage.submission_id == again["id"], EvaluationStage.name == "pretrain"
            )
        )
        assert (
            cached.detail["cache_hit"] is True
            and cached.detail["encoder_path"] == pretrain.detail["encoder_path"]
        )
        assert session.get(Submission, sid).mean_normdel == pytest.approx(board["rows"][0]["mean_normdel"])
        workers = session.scalars(select(WorkerHeartbeat)).all()
        assert [(w.name, w.queues, w.current) for w in workers] == [("w1@test", "gpu,light", None)]
