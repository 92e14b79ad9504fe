"""The reconciler: finds submissions the database says are pending but no live task holds, and returns
them to be enqueued again. The database, not the broker, is the source of truth; tasks are idempotent, so
a duplicate message costs one no-op task, while a lost one would leave a submission stuck for ever.

A submission needs re-enqueueing when
- a stage is `running` but its heartbeat is older than the lease: its worker died (SIGKILL, OOM, a lost
  machine); the stage goes back to `pending` (or, after `max_attempts` interruptions, the submission fails);
- nothing runs, nothing happened for a lease, and the queue its next step goes to is empty: the message
  was lost (a broker restart, an embedded broker's message taken by a killed worker, a failed send).
  While that queue holds messages, the submission's may be among them, waiting its turn: it is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.models import PENDING_STATUSES, StageStatus, Submission
from app.services.pipeline import fail_submission, is_stale, next_steps

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
) -> list[Submission]:
    """Submissions to enqueue again (their stale stages already reset); the caller dispatches and commits."""
    lease = timedelta(seconds=lease_seconds)
    stuck = []
    for submission in session.scalars(
        select(Submission).where(Submission.status.in_(PENDING_STATUSES)).order_by(Submission.id)
    ):
        running = [s for s in submission.stages if s.status == StageStatus.running]
        if any(not is_stale(s, now, lease_seconds) for s in running):
            continue  # a live task holds it
        if running:
            exhausted = [s for s in running if s.attempts >= max_attempts]
            if exhausted:
                stage = exhausted[0]
                fail_submission(
                    session=session,
                    stage=stage,
                    error=f"interrupted {stage.attempts} times (worker lost); giving up",
                    log_tail=stage.log_tail,
                    now=now,
                )
                log.warning(
                    "submission %d: stage %s failed after %d interruptions",
                    submission.id,
                    stage.name,
                    stage.attempts,
                )
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
        try:
            waiting = queue_size(steps[0].queue)
        except Exception:  # the broker is down: re-sending would fail too
            log.exception("reconciler: cannot read the size of queue %s", steps[0].queue)
            continue
        if waiting == 0:
            log.warning(
                "submission %d: no task holds it and queue %s is empty; re-enqueueing",
                submission.id,
                steps[0].queue,
            )
            stuck.append(submission)
    return stuck
