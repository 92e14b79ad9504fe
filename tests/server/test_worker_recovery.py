"""A worker killed (SIGKILL) or stopped cold (SIGQUIT) mid-pretraining: a restarted worker finishes the
submission, and no result is written twice. The database, not the broker, says what is pending. On Redis a
killed worker's message sits unacknowledged for the visibility timeout (an hour): the reconciler sees the
stale lease and enqueues the stage again. A cold shutdown hands the stage back at once, and on the filesystem
broker its message is gone: the reconciler sees a pending stage that no message holds and enqueues it."""

from __future__ import annotations

import json
import shutil
import signal

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


def stack_for(request, name: str, tmp_path):
    if name == "embedded":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "db.sqlite")
        return make_stack("embedded", tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", None)
    url = request.getfixturevalue("postgres").create()
    return make_stack("production", tmp_path, url, request.getfixturevalue("redis_prefix") + "kill:")


PRODUCTION = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.parametrize(
    "stack_name, sig",
    [
        pytest.param("production", signal.SIGKILL, marks=PRODUCTION),
        # Celery's cold shutdown, what the demo sends its worker on Ctrl-C; on the filesystem broker the
        # message is gone with the worker (test_pipeline covers a lost message on both brokers)
        ("embedded", signal.SIGQUIT),
    ],
    ids=["production-sigkill", "embedded-sigquit"],
)
def test_worker_stopped_mid_pretraining_recovers(request, stack_name, sig, pool_dir, pool_ids, tmp_path):
    stack = stack_for(request, stack_name, tmp_path)
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
        if sig == signal.SIGKILL:
            first.kill()  # no clean-up code runs: the stage stays `running` until its lease lapses
        else:
            assert first.stop(sig, timeout=60) is not None
        with stack.session() as session:
            stage = pipeline.stage_row(session, sid, 0, "pretrain")
            assert stage.progress < 1.0, "stopped too late to test anything"
            # a cold shutdown hands the stage back at once; it is never a failure of the submission
            assert stage.status == (StageStatus.running if sig == signal.SIGKILL else StageStatus.pending)
            assert session.get(Submission, sid).status == SubmissionStatus.running

        second = start_worker(stack.env, "w2", tmp_path)
        done = poll_submission(base, seeded.token, sid, until={"succeeded"}, timeout=240, procs=[api, second])
        board = httpx.get(f"{base}/api/v1/phases/{seeded.phase_slug}/leaderboard", timeout=10).json()
    finally:
        for proc in (second, first, api):
            if proc is not None:
                proc.stop()

    if sig == signal.SIGKILL:
        assert "worker lost during ['pretrain']" in second.tail(200_000)
    else:
        assert "interrupted by the worker's shutdown" in first.tail(200_000)
        # re-enqueued by a reconciler: the stopping worker's own (still running) or the next one's
        logs = first.tail(200_000) + second.tail(200_000)
        assert "no task holds it and no message for it waits in queue gpu; re-enqueueing" in logs
    assert [row["submission_id"] for row in board["rows"]] == [sid]
    # a handed-back stage is not an interruption; a killed worker's is
    assert done["stages"][1]["name"] == "pretrain"
    assert done["stages"][1]["attempts"] == (2 if sig == signal.SIGKILL else 1)
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
