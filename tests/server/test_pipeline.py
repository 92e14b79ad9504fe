"""The pipeline's database state machine and the reconciler, on both stacks (real databases and brokers;
no worker process: these drive the same service functions the tasks call)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.contract import create_celery, queue_size, queued_submissions
from app.models import StageStatus, Submission, SubmissionStatus, utcnow
from app.services import pipeline
from app.services.dispatch import dispatch_next
from app.services.reconcile import find_stuck

LEASE = 10.0


@pytest.fixture
def celery(stack):
    return create_celery(stack.settings)


def claim(stack, sid, name, task, now=None, seed=0):
    with stack.session() as session:
        outcome, _ = pipeline.claim_stage(
            session=session, submission_id=sid, seed=seed, name=name, worker="w", task_id=task,
            lease_seconds=LEASE, max_attempts=3, now=now,
        )  # fmt: skip
        return outcome


def finish(stack, sid, name, detail=None, seed=0):
    with stack.session() as session:
        stage = pipeline.stage_row(session, sid, seed, name, lock=True)
        pipeline.complete_stage(session=session, stage=stage, detail=detail or {}, seconds=1.0, log_tail=None)


def fake_results(names: list[str], base: float) -> dict:
    datasets = {n: {"miou": base + i / 100, "normdel": 0.5 + i / 100} for i, n in enumerate(names)}
    return {
        "tier": "micro", "tier_hash": "h" * 64, "code_version": "test", "datasets": datasets,
        "mean_miou": sum(d["miou"] for d in datasets.values()) / len(datasets),
        "mean_normdel": sum(d["normdel"] for d in datasets.values()) / len(datasets),
    }  # fmt: skip


def test_claims_are_exclusive_leased_and_idempotent(stack, submission_id):
    sid = submission_id
    assert claim(stack, sid, "validate", "t1") == pipeline.Claim.claimed
    assert claim(stack, sid, "validate", "t2") == pipeline.Claim.held  # a live holder keeps it
    with stack.session() as session:
        stage_id = pipeline.stage_row(session, sid, 0, "validate").id
        assert pipeline.heartbeat(session=session, stage_id=stage_id, task_id="t1")
        sub = session.get(Submission, sid)
        assert (sub.status, sub.current_stage) == (SubmissionStatus.running, "validate")
    later = utcnow() + timedelta(seconds=LEASE + 1)
    assert claim(stack, sid, "validate", "t2", now=later) == pipeline.Claim.claimed  # t1's lease lapsed
    with stack.session() as session:
        assert not pipeline.heartbeat(
            session=session, stage_id=stage_id, task_id="t1"
        )  # t1 learns it lost it
        assert pipeline.stage_row(session, sid, 0, "validate").attempts == 2
    finish(stack, sid, "validate")
    assert claim(stack, sid, "validate", "t3") == pipeline.Claim.done  # a finished stage is a no-op
    with stack.session() as session:
        session.get(Submission, sid).status = SubmissionStatus.cancelled
    assert claim(stack, sid, "pretrain", "t4") == pipeline.Claim.stopped


def test_next_steps_walk_the_pipeline_and_results_are_written_once(stack, submission_id):
    sid = submission_id

    def steps(session) -> list[tuple]:
        return [(s.kind, s.seed, len(s.tasks)) for s in pipeline.next_steps(session.get(Submission, sid))]

    with stack.session() as session:
        assert steps(session) == [("validate", 0, 0)]
    finish(stack, sid, "validate")
    with stack.session() as session:
        assert steps(session) == [("pretrain", 0, 0)]
    finish(stack, sid, "pretrain")
    with stack.session() as session:
        assert steps(session) == [("finetunes", 0, 8)]
        names = [
            s.name.removeprefix("finetune:")
            for s in session.get(Submission, sid).stages
            if s.name.startswith("finetune:")
        ]
    for name in names:
        claim(stack, sid, f"finetune:{name}", "t")
        with stack.session() as session:
            stage_id = pipeline.stage_row(session, sid, 0, f"finetune:{name}").id
            assert pipeline.record_progress(session=session, stage_id=stage_id, task_id="t", fraction=0.5)
        finish(stack, sid, f"finetune:{name}")
    with stack.session() as session:
        assert steps(session) == [("aggregate", 0, 0)]
        sub = session.get(Submission, sid)
        assert 0.9 < sub.progress < 1.0 and sub.eta_at is not None
    claim(stack, sid, "aggregate", "t")
    for attempt in range(2):
        with stack.session() as session:
            stage = pipeline.stage_row(session, sid, 0, "aggregate", lock=True)
            wrote = pipeline.store_results(
                session=session, stage=stage, results=fake_results(names, 0.6), seconds=1, log_tail=None
            )
            assert wrote is (attempt == 0)
    with stack.session() as session:
        sub = session.get(Submission, sid)
        assert sub.status == SubmissionStatus.succeeded and sub.progress == 1.0 and len(sub.results) == 8
        assert sub.mean_normdel == pytest.approx(fake_results(names, 0.6)["mean_normdel"])
        assert pipeline.next_steps(sub) == []


def test_a_failed_stage_fails_the_submission_with_its_log(stack, submission_id):
    claim(stack, submission_id, "validate", "t")
    with stack.session() as session:
        stage = pipeline.stage_row(session, submission_id, 0, "validate")
        pipeline.fail_submission(
            session=session, stage=stage, error="ValueError: bad pool", log_tail="line a\nline b"
        )
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        assert sub.status == SubmissionStatus.failed and sub.error == "validate: ValueError: bad pool"
        assert sub.log_tail == "line a\nline b" and sub.finished_at is not None
        assert {s.status for s in sub.stages[1:]} == {StageStatus.cancelled}
        assert pipeline.next_steps(sub) == []


def test_reconciler_resends_a_lost_message_but_not_a_waiting_one(stack, celery, submission_id):
    old = utcnow() - timedelta(hours=1)
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        dispatch_next(session=session, celery=celery, submission=sub)
        sub.created_at = sub.dispatched_at = old
    assert queue_size(celery, "light") == 1

    def stuck() -> list[int]:
        with stack.session() as session:
            found = find_stuck(
                session=session,
                now=utcnow(),
                lease_seconds=LEASE,
                max_attempts=3,
                queue_size=lambda q: queue_size(celery, q),
            )
            for sub in found:
                dispatch_next(session=session, celery=celery, submission=sub)
            return [s.id for s in found]

    assert stuck() == []  # its message waits in the queue: leave it alone
    with celery.connection_for_write() as connection:
        connection.default_channel.queue_purge("light")  # the broker loses it
    assert queue_size(celery, "light") == 0
    assert stuck() == [submission_id]
    assert queue_size(celery, "light") == 1  # sent again
    assert stuck() == []  # and just dispatched: not again


def test_reconciler_resends_a_lost_message_behind_other_messages(stack, celery, submission_id, pool_ids):
    """A busy queue does not hide a lost message: the reconciler reads which submissions it holds."""
    from app.models import Phase, Team
    from app.services.submissions import SubmissionMeta, create_submission

    old = utcnow() - timedelta(hours=1)
    with stack.session() as session:
        mine = session.get(Submission, submission_id)
        mine.created_at = mine.dispatched_at = old  # sent an hour ago; the broker lost it
        other = create_submission(
            session=session, team=session.get(Team, mine.team_id), phase=session.get(Phase, mine.phase_id),
            data="\n".join(pool_ids[:50]).encode(), meta=SubmissionMeta(method="other"),
max_bytes=10**6,
        )  # fmt: skip
        session.flush()
        dispatch_next(session=session, celery=celery, submission=other)
        other.created_at = other.dispatched_at = old  # as old, but its message still waits
        other_id = other.id
    assert queue_size(celery, "light") == 1 and queued_submissions(celery, "light") == {other_id}
    with stack.session() as session:
        found = find_stuck(
            session=session, now=utcnow(), lease_seconds=LEASE, max_attempts=3,
            queue_size=lambda q: queue_size(celery, q), queued=lambda q: queued_submissions(celery, q),
        )  # fmt: skip
        assert [s.id for s in found] == [submission_id]
        for sub in found:
            dispatch_next(session=session, celery=celery, submission=sub)
    assert queued_submissions(celery, "light") == {other_id, submission_id}


def test_reconciler_hands_on_a_dead_workers_stage_then_gives_up(stack, celery, submission_id):
    old = utcnow() - timedelta(hours=1)
    for attempt in range(1, 4):
        assert claim(stack, submission_id, "validate", f"t{attempt}", now=old) == pipeline.Claim.claimed
        with stack.session() as session:  # the worker's lease stores what its stage logged so far
            stage = pipeline.stage_row(session, submission_id, 0, "validate")
            assert pipeline.heartbeat(
                session=session,
                stage_id=stage.id,
                task_id=f"t{attempt}",
                log_tail=f"attempt {attempt}: step 3",
                now=old,
            )
        with stack.session() as session:
            found = find_stuck(
                session=session, now=utcnow(), lease_seconds=LEASE, max_attempts=3, queue_size=lambda q: 0
            )
            stage = pipeline.stage_row(session, submission_id, 0, "validate")
            if attempt < 3:
                assert [s.id for s in found] == [submission_id] and stage.status == StageStatus.pending
            else:
                assert found == [] and stage.status == StageStatus.failed
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        assert sub.status == SubmissionStatus.failed and "interrupted 3 times" in sub.error
        assert sub.log_tail == "attempt 3: step 3"  # what the last worker's stage was doing when it died


def test_cancel_stops_the_holder_and_rerun_starts_over(stack, submission_id):
    sid = submission_id
    assert claim(stack, sid, "validate", "t1") == pipeline.Claim.claimed
    with stack.session() as session:
        stage_id = pipeline.stage_row(session, sid, 0, "validate").id
        assert pipeline.cancel_submission(
            session=session, submission=session.get(Submission, sid), reason="by request"
        )
    with stack.session() as session:
        assert not pipeline.heartbeat(
            session=session, stage_id=stage_id, task_id="t1"
        )  # the running task stops
        assert not pipeline.record_progress(session=session, stage_id=stage_id, task_id="t1", fraction=0.5)
        sub = session.get(Submission, sid)
        assert sub.status == SubmissionStatus.cancelled and pipeline.next_steps(sub) == []
        assert not pipeline.cancel_submission(session=session, submission=sub, reason="twice")
    assert claim(stack, sid, "pretrain", "t2") == pipeline.Claim.stopped
    with stack.session() as session:
        sub = session.get(Submission, sid)
        names = [s.name.removeprefix("finetune:") for s in sub.stages if s.name.startswith("finetune:")]
        pipeline.reset_for_rerun(session=session, submission=sub, seeds=[0, 1], task_names=names)
    with stack.session() as session:
        sub = session.get(Submission, sid)
        assert sub.status == SubmissionStatus.queued and sub.error is None and len(sub.stages) == 1 + 2 * 10
        assert [(s.kind, s.seed) for s in pipeline.next_steps(sub)] == [("validate", 0)]
