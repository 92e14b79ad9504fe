"""Enqueueing by task name: the API and the reconciler never import the worker's code (nor torch).

Task names and queues are the contract with `worker/tasks.py` (app/contract.py); `next_steps` says what
to send.
"""

from __future__ import annotations

import logging

from celery import Celery, chord
from sqlalchemy.orm import Session

from app.contract import Stage
from app.models import Submission, utcnow
from app.services.pipeline import Step, next_steps

log = logging.getLogger("delbench.dispatch")


def send_step(celery: Celery, submission_id: int, step: Step) -> None:
    if step.kind == "validate":
        celery.send_task(Stage.validate.task, args=[submission_id])
    elif step.kind == "pretrain":
        celery.send_task(Stage.pretrain.task, args=[submission_id, step.seed])
    elif step.kind == "aggregate":  # also a chord's callback, whose first argument is the header's results
        celery.send_task(Stage.aggregate.task, args=[None, submission_id, step.seed])
    elif step.kind == "finetunes":
        header = [
            celery.signature(Stage.finetune.task, args=[submission_id, step.seed, name])
            for name in step.tasks
        ]
        chord(header, app=celery)(celery.signature(Stage.aggregate.task, args=[submission_id, step.seed]))
    else:
        raise ValueError(f"unknown step {step.kind!r}")


def dispatch_next(*, session: Session, celery: Celery, submission: Submission) -> list[Step]:
    """Enqueue what comes next for `submission` and stamp `dispatched_at` (committed by the caller).
    The broker may be down: the submission then stays queued in the database and the reconciler sends it
    later, so the error is logged, not raised."""
    steps = next_steps(submission)
    try:
        for step in steps:
            send_step(celery, submission.id, step)
    except Exception:  # kombu raises a variety of connection errors; none may lose the stored submission
        log.exception("submission %d: could not enqueue %s; the reconciler will retry", submission.id, steps)
        return []
    if steps:
        submission.dispatched_at = utcnow()
        log.info(
            "submission %d: enqueued %s", submission.id, ", ".join(f"{s.kind}(seed {s.seed})" for s in steps)
        )
    return steps
