"""A worker bootstep: one thread that says the worker is alive (`worker_heartbeats`) and, on workers that
consume the light queue, runs the reconciler every `reconcile_seconds` (see app/services/reconcile.py).

Beat-less by design: no extra process to deploy, and it runs wherever work runs. On PostgreSQL an advisory
lock lets one reconciler act at a time; duplicates would be harmless anyway (tasks are idempotent).
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery, bootsteps

from app.contract import queue_size, queued_submissions
from app.models import WorkerHeartbeat, utcnow
from app.services.dispatch import dispatch_next
from app.services.reconcile import find_stuck, try_lock
from worker.runtime import runtime

log = logging.getLogger("delbench.reconcile")


def reconcile_once(app: Celery) -> list[int]:
    """One pass; returns the submissions enqueued again."""
    rt = runtime()
    with rt.session() as session:
        if not try_lock(session):
            return []
        stuck = find_stuck(
            session=session,
            now=utcnow(),
            lease_seconds=rt.settings.lease_seconds,
            max_attempts=rt.settings.max_attempts,
            queue_size=lambda queue: queue_size(app, queue),
            queued=lambda queue: queued_submissions(app, queue),
        )
        for submission in stuck:
            dispatch_next(session=session, celery=app, submission=submission)
        return [s.id for s in stuck]


def beat(name: str, queues: list[str]) -> None:
    with runtime().session() as session:
        row = session.get(WorkerHeartbeat, name)
        if row is None:
            session.add(
                WorkerHeartbeat(name=name, queues=",".join(queues), pid=os.getpid(), started_at=utcnow())
            )
        else:
            row.queues, row.pid, row.last_seen_at = ",".join(queues), os.getpid(), utcnow()


class Reconciler(threading.Thread):
    def __init__(self, app: Celery, name: str, queues: list[str]):
        super().__init__(daemon=True, name="delbench-reconciler")
        self.app, self.worker_name, self.queues = app, name, queues
        self.stopped = threading.Event()

    def run(self) -> None:
        settings = runtime().settings
        interval = settings.reconcile_seconds or 15.0
        reconcile = settings.reconcile_seconds > 0 and "light" in self.queues
        while True:
            try:
                beat(self.worker_name, self.queues)
                if reconcile:
                    enqueued = reconcile_once(self.app)
                    if enqueued:
                        log.warning("reconciler: enqueued again %s", enqueued)
            except Exception:  # the database or broker may be away; try again next round
                log.exception("reconciler: pass failed")
            if self.stopped.wait(interval):
                return


class ReconcilerStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.thread: Reconciler | None = None

    def start(self, worker) -> None:
        queues = sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
        self.thread = Reconciler(worker.app, worker.hostname, queues)
        self.thread.start()

    def stop(self, worker) -> None:
        if self.thread is not None:
            self.thread.stopped.set()
