"""Organizer routes (admin tokens only). Queue and worker health here; the rest of the admin API builds on
the same `AdminDep`."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select

from app.api.deps import AdminDep, CeleryDep, SessionDep
from app.models import Submission, WorkerHeartbeat
from app.schemas import ErrorBody
from worker.celery_app import QUEUES, queue_size

router = APIRouter(prefix="/admin", tags=["admin"])


class WorkerOut(BaseModel):
    name: str
    queues: list[str]
    pid: int
    started_at: datetime
    last_seen_at: datetime
    current: str | None


class Health(BaseModel):
    submissions: dict[str, int]  # by status
    queues: dict[str, int | None]  # messages waiting; None when the broker does not answer
    workers: list[WorkerOut]


@router.get(
    "/health", response_model=Health, responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)
def health(session: SessionDep, celery: CeleryDep, _admin: AdminDep) -> Health:
    """What is queued, running, failed; what waits in each queue; which workers said they are alive, when."""
    counts = dict(session.execute(select(Submission.status, func.count()).group_by(Submission.status)).all())
    queues: dict[str, int | None] = {}
    for name in QUEUES:
        try:
            queues[name] = queue_size(celery, name)
        except Exception:  # a broker outage is what this route must be able to show
            queues[name] = None
    workers = session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.name))
    return Health(
        submissions={status.value: n for status, n in counts.items()},
        queues=queues,
        workers=[
            WorkerOut(
                name=w.name,
                queues=w.queues.split(","),
                pid=w.pid,
                started_at=w.started_at,
                last_seen_at=w.last_seen_at,
                current=w.current,
            )
            for w in workers
        ],
    )
