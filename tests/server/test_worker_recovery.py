"""A worker killed (SIGKILL) mid-pretraining: a restarted worker finishes the submission, and no result is
written twice. The database, not the broker, says what is pending: on the filesystem broker the killed
worker's message is gone for good, and on Redis it sits unacknowledged for the visibility timeout (an hour);
in both cases the reconciler sees the stale lease and enqueues the stage again."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.models import EvaluationRun, EvaluationStage, Result, StageStatus, Submission, SubmissionStatus
from app.services import pipeline
from tests.server.conftest import MICRO_TIER, free_port, make_stack, seed_phase
from tests.server.procs import poll_submission, start_server, start_worker, wait_until

pytestmark = pytest.mark.slow


def long_pretraining_tier(tmp_path) -> str:
    """The micro tier with 32 pretraining steps instead of 16, so there is a 'mid-pretraining' to kill in
    (the test kills at the first progress report, and checks afterwards that pretraining had not ended)."""
    raw = json.loads(MICRO_TIER.read_text())
    raw["pretrain"]["samples_seen"] = 32 * raw["pretrain"]["batch_size"]
    raw["pretrain"]["checkpoint_every"] = 8
    path = tmp_path / "micro-long.json"
    path.write_text(json.dumps(raw))
    return str(path)


@pytest.fixture(
    params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def live_stack(request, tmp_path):
    if request.param == "embedded":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "db.sqlite")
        return make_stack("embedded", tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", None)
    url = request.getfixturevalue("postgres").create()
    return make_stack("production", tmp_path, url, request.getfixturevalue("redis_prefix") + "kill:")


def test_worker_killed_mid_pretraining_recovers(live_stack, pool_dir, pool_ids, tmp_path):
    stack = live_stack
    seeded = seed_phase(stack, pool_dir, tier=long_pretraining_tier(tmp_path))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    first = start_worker(stack.env, "w1", tmp_path)
    second = None
    try:
        r = httpx.post(
            f"{base}/api/v1/phases/{seeded.phase_slug}/submissions",
            headers={"Authorization": f"Bearer {seeded.token}"},
            files={"file": ("ids.txt", "\n".join(pool_ids[::3]).encode())},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        sid = r.json()["id"]

        def pretraining() -> bool:
            with stack.session() as session:
                stage = pipeline.stage_row(session, sid, 0, "pretrain")
                return stage.status == StageStatus.running and stage.progress > 0

        wait_until(
            pretraining, timeout=120, what="pretraining to report progress", interval=0.05, proc_logs=[first]
        )
        first.kill()
        with stack.session() as session:
            stage = pipeline.stage_row(session, sid, 0, "pretrain")
            assert stage.status == StageStatus.running and stage.progress < 1.0, (
                "killed too late to test anything"
            )
            assert session.get(Submission, sid).status == SubmissionStatus.running

        second = start_worker(stack.env, "w2", tmp_path)
        done = poll_submission(base, seeded.token, sid, until={"succeeded"}, timeout=240, procs=[api, second])
        board = httpx.get(f"{base}/api/v1/phases/{seeded.phase_slug}/leaderboard", timeout=10).json()
    finally:
        for proc in (second, first, api):
            if proc is not None:
                proc.stop()

    assert "worker lost during ['pretrain']" in second.tail(200_000)
    assert [row["submission_id"] for row in board["rows"]] == [sid]
    assert done["stages"][1]["name"] == "pretrain" and done["stages"][1]["attempts"] == 2
    with stack.session() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        assert count(Result) == 8 and count(EvaluationRun) == 1
        assert (
            session.scalar(
                select(func.max(EvaluationStage.attempts)).where(EvaluationStage.name != "pretrain")
            )
            == 1
        )
        # writing the results again is a no-op, and the database itself refuses a duplicate row
        aggregate = pipeline.stage_row(session, sid, 0, "aggregate")
        results = session.scalar(select(EvaluationRun)).results
        assert (
            pipeline.store_results(
                session=session, stage=aggregate, results=results, seconds=0, log_tail=None
            )
            is False
        )
    with pytest.raises(IntegrityError), stack.session() as session:
        session.add(Result(submission_id=sid, seed=0, dataset="etis", miou=0.5, normdel=0.5))
