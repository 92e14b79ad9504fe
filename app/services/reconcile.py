"""The reconciler: finds submissions the database says are pending but no live task holds, and returns
them to be enqueued again. The database, not the broker, is the source of truth; tasks are idempotent, so
a duplicate message costs one no-op task, while a lost one would leave a submission stuck for ever.

A submission needs re-enqueueing when
- a stage is `running` but its heartbeat is older than the lease: its worker died (SIGKILL, OOM, a lost
  machine); the stage goes back to `pending` (or, after `max_attempts` interruptions, the submission fails);
- nothing runs, nothing happened for a lease, and no message for it waits in the queue its next step goes
  to: the message was lost (a broker restart, an embedded broker's message taken by a killed worker, a
  failed send). The queue is read message by message where the broker allows it (Redis, the filesystem
  broker), so a lost message is sent again however busy the queue; on another broker only an empty queue
  says so, and while it holds messages the submission's may be among them, waiting its turn.

Each candidate's stages are read again, locked, before anything is decided (on PostgreSQL), so a stage a
worker claimed since the first read is seen as claimed and not sent a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.models import PENDING_STATUSES, EvaluationStage, StageStatus, Submission
from app.services.pipeline import give_up_if_exhausted, is_stale, next_steps

log = logging.getLogger("delbench.reconcile")
ADVISORY_LOCK = 0x44454C42  # "DELB": one reconciler at a time across workers on PostgreSQL


def try_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: one host, and the transaction already holds the write lock
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK}))


def find_stuck(
    *,
    session: Session,
    now: datetime,
    lease_seconds: float,
    max_attempts: int,
    queue_size: Callable[[str], int],
    queued: Callable[[str], set[int] | None] = lambda queue: None,
) -> list[Submission]:
    """Submissions to enqueue again (their stale stages already reset); the caller dispatches and commits.
    `queued(queue)`: the submissions with a message waiting there, or None where that cannot be read."""
    lease = timedelta(seconds=lease_seconds)
    stuck = []
    waiting_in: dict[str, set[int] | None] = {}
    for submission in session.scalars(
        select(Submission).where(Submission.status.in_(PENDING_STATUSES)).order_by(Submission.id)
    ):
        _reread_locked(session, submission)
        if submission.status not in PENDING_STATUSES:
            continue
        running = [s for s in submission.stages if s.status == StageStatus.running]
        if any(not is_stale(s, now, lease_seconds) for s in running):
            continue  # a live task holds it
        if running:
            # any() stops at the first stage that gives up: the submission has failed then
            if any(
                give_up_if_exhausted(session=session, stage=s, max_attempts=max_attempts, now=now)
                for s in running
            ):
                log.warning("submission %d: failed after repeated worker losses", submission.id)
                continue
            for stage in running:
                stage.status = StageStatus.pending
                stage.heartbeat_at = None
            log.warning(
                "submission %d: worker lost during %s; re-enqueueing",
                submission.id,
                [s.name for s in running],
            )
            stuck.append(submission)
            continue
        activity = [submission.created_at, submission.dispatched_at] + [
            s.finished_at for s in submission.stages
        ]
        if now - max(t for t in activity if t is not None) < lease:
            continue  # just created or just moved on: its message is on its way
        steps = next_steps(submission)
        if not steps:
            continue
        queue = steps[0].queue
        try:
            if queue not in waiting_in:
                waiting_in[queue] = queued(queue)
            known = waiting_in[queue]
            lost = submission.id not in known if known is not None else queue_size(queue) == 0
        except Exception:  # the broker is down: re-sending would fail too
            log.exception("reconciler: cannot read queue %s", queue)
            continue
        if lost:
            log.warning(
                "submission %d: no task holds it and no message for it waits in queue %s; re-enqueueing",
                submission.id,
                queue,
            )
            stuck.append(submission)
    return stuck


def _reread_locked(session: Session, submission: Submission) -> None:
    """The submission and its stages as committed now, locked until the caller commits (PostgreSQL): a
    worker's claim in between waits for the reconciler's decision instead of being overlooked by it."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: one host, and writers are serialised anyway
    session.execute(
        select(Submission).where(Submission.id == submission.id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
    session.execute(
        select(EvaluationStage).where(EvaluationStage.submission_id == submission.id).with_for_update()
        .execution_options(populate_existing=True)
    )  # fmt: skip
