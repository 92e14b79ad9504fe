"""Queue and worker health for the organizers: what is queued, running and failed, which workers are alive.

Workers are alive by their own heartbeats in the database (`worker_heartbeats`, written every
`reconcile_seconds`), which works on every broker; broker queue lengths come from the broker itself.
"""

from __future__ import annotations

import shutil
from datetime import timedelta

from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.contract import QUEUES, queue_size
from app.models import Submission, SubmissionStatus, WorkerHeartbeat, utcnow
from app.settings import Settings

RECENT = 20


def health(*, session: Session, celery: Celery, settings: Settings) -> dict:
    now = utcnow()
    counts = dict(session.execute(select(Submission.status, func.count()).group_by(Submission.status)).all())
    by_status = {status.value: n for status, n in counts.items()}  # the statuses present

    def recent(status: SubmissionStatus, order) -> list[Submission]:
        return list(
            session.scalars(
                select(Submission).where(Submission.status == status).order_by(order).limit(RECENT)
            )
        )

    queues: dict[str, int | None] = {}
    broker_error = None
    for queue in QUEUES:
        try:
            queues[queue] = queue_size(celery, queue)
        except Exception as exc:  # a broker outage is what this route must be able to show
            queues[queue] = None
            broker_error = f"{type(exc).__name__}: {exc}"
    limit = timedelta(seconds=settings.worker_alive_seconds)
    workers = [
        {
            "name": w.name,
            "queues": w.queues.split(","),
            "pid": w.pid,
            "started_at": w.started_at,
            "last_seen_at": w.last_seen_at,
            "alive": now - w.last_seen_at <= limit,
            "current": w.current,
        }
        for w in session.scalars(select(WorkerHeartbeat).order_by(WorkerHeartbeat.name))
    ]
    return {
        "submissions": by_status,
        "queues": queues,  # messages waiting; None when the broker does not answer
        "broker_error": broker_error,
        "workers": workers,
        "workers_alive": sum(w["alive"] for w in workers),
        "running": [_brief(s) for s in recent(SubmissionStatus.running, Submission.started_at)],
        "queued": [_brief(s) for s in recent(SubmissionStatus.queued, Submission.created_at)],
        "failed": [_brief(s) for s in recent(SubmissionStatus.failed, Submission.finished_at.desc())],
        "disk": _disk(settings),
    }


def _disk(settings: Settings) -> dict:
    """Free space where the encoders and checkpoints are written: a full disk stops every pretraining."""
    folder = settings.cache_dir
    while not folder.exists() and folder != folder.parent:  # the nearest existing folder holds it
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    return {"artifacts_dir": str(settings.cache_dir), "free_bytes": usage.free, "total_bytes": usage.total}


def _brief(s: Submission) -> dict:
    return {
        "id": s.id,
        "phase": s.phase.slug,
        "team": s.team.name,
        "method": s.method,
        "status": s.status.value,
        "current_stage": s.current_stage,
        "progress": s.progress,
        "created_at": s.created_at,
        "finished_at": s.finished_at,
        "error": s.error,
    }
