"""Runs one pipeline stage inside a Celery task: claim it, keep its lease alive, report progress, capture its
log, store the outcome. Every exception ends as a stored status: transient ones (database or broker
unreachable) are retried with back-off, anything else fails the submission with the stage's log tail."""

from __future__ import annotations

import collections
import logging
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Task
from celery.signals import worker_shutting_down
from celery.worker import state as worker_state
from sqlalchemy import update

from app.logs import LineFormatter, stage_logging
from app.models import EvaluationStage, Submission, WorkerHeartbeat
from app.services import pipeline
from app.services.dispatch import dispatch_next
from evaluator.store import DiskFullError
from worker.runtime import Runtime, runtime

log = logging.getLogger("delbench.worker")

# Infrastructure faults: the stage is retried with back-off (a full disk included: the organizers free it),
# and fails with the fault's own message only when the retries run out.
TRANSIENT = (
    DiskFullError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    ConnectionError,
)


# Set by Celery's `worker_shutting_down` signal, warm or cold, in the process the signal reaches (the solo
# pool's worker itself). A warm shutdown (SIGTERM) stops the running stage at its next progress report; a
# cold one (SIGQUIT) interrupts it with whatever exception the pool raises: either is the worker stopping,
# not the stage failing.
SHUTTING_DOWN = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_kwargs) -> None:
    SHUTTING_DOWN.set()


def _shutting_down() -> bool:
    # A cold shutdown cancels the running task (raising in it) before the signal above is sent, but after
    # Celery's state says the worker is terminating.
    return SHUTTING_DOWN.is_set() or worker_state.should_terminate is not None


class NotReady(Exception):
    """The stage's inputs are not all there yet: it goes back to pending, to be enqueued again later."""


class StageAbandoned(Exception):
    """The task no longer holds its stage (cancelled, or its lease lapsed and another task took over)."""


class WorkerStopping(Exception):
    """The worker is shutting down (SIGTERM, the demo's Ctrl-C): the stage stops at its next step and is
    handed back and sent again, to resume from its checkpoint, instead of holding the shutdown for as long
    as the stage has left to run."""


@dataclass(frozen=True)
class StageContext:
    submission_id: int
    seed: int
    name: str
    stage_id: int
    selection_data: bytes  # the uploaded file as received
    file_sha256: str
    selection_hash: str
    pool_dir: str
    pool_hash: str | None  # the phase's record of the pool; this host's copy must match it
    tasks_dir: Path
    tier: str
    settings: object
    progress: Callable[[str, int, int], None]


class LogTail(logging.Handler):
    """The last lines logged while a stage runs: what the team reads when it fails."""

    def __init__(self, lines: int):
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.setFormatter(LineFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self, extra: str = "") -> str:
        return "\n".join([*self.lines, extra] if extra else self.lines)


class Lease(threading.Thread):
    """Renews the stage's heartbeat every quarter lease while the stage runs, whatever the stage is doing,
    and stores the log tail with it: if the worker dies, the submission the reconciler fails still says
    what its stage was doing."""

    def __init__(self, rt: Runtime, stage_id: int, task_id: str, tail: LogTail):
        super().__init__(daemon=True, name=f"lease-{stage_id}")
        self.rt, self.stage_id, self.task_id, self.tail = rt, stage_id, task_id, tail
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        interval = max(0.2, self.rt.settings.lease_seconds / 4)
        while not self.stopped.wait(interval):
            try:
                with self.rt.session() as session:
                    alive = pipeline.heartbeat(
                        session=session,
                        stage_id=self.stage_id,
                        task_id=self.task_id,
                        log_tail=self.tail.text(),
                    )
                    if not alive:
                        self.lost.set()
                        return
            except Exception:  # the database may be briefly away; the lease has slack for that
                log.warning("stage %d: heartbeat failed", self.stage_id, exc_info=True)


def run_stage(
    task: Task,
    *,
    submission_id: int,
    seed: int | None,
    name: str,
    body: Callable[[StageContext], dict],
    finish: Callable | None = None,
    advance: bool = True,
) -> dict | None:
    """Run `body` as stage (submission, seed, name) unless it is done or held; returns its detail or None.

    `finish(session, stage, detail, seconds, log_tail)` stores the outcome (default: `complete_stage`) in the
    same transaction that checks the task still holds the stage; `advance` enqueues what comes next.
    `seed` None: the submission's first seed (the validate stage's), read here so that a database error while
    reading it is retried like any other."""
    rt = runtime()
    task_id = task.request.id or f"local-{random.getrandbits(64):x}"
    worker = task.request.hostname or socket.gethostname()
    label = f"submission {submission_id} {name}" + (f" (seed {seed})" if seed is not None else "")
    claimed = _claim(task, rt, submission_id=submission_id, seed=seed, name=name, worker=worker,
                     task_id=task_id, label=label)  # fmt: skip
    if claimed is None:
        return None
    seed, ctx_fields = claimed
    stage_id = ctx_fields["stage_id"]
    tail = LogTail(rt.settings.log_tail_lines)
    lease = Lease(rt, stage_id, task_id, tail)
    progress = _progress_reporter(rt, stage_id, task_id, lease, label)
    ctx = StageContext(**ctx_fields, seed=seed, name=name, settings=rt.settings, progress=progress)
    logging.getLogger().addHandler(tail)
    lease.start()
    started = time.perf_counter()
    try:
        with stage_logging(label):
            detail = body(ctx)
        seconds = time.perf_counter() - started
        _finish(
            rt, submission_id, seed, name, task_id, finish or _complete, detail, seconds, tail.text(), label
        )
        log.info("%s: done in %.1f s", label, seconds)
        if advance:
            _send_next(task, rt, submission_id)
        return _summary(detail)
    except StageAbandoned:
        log.warning("%s: abandoned (cancelled, or another task took it over)", label)
        return None
    except WorkerStopping:
        _release(rt, stage_id, task_id)
        try:
            _send_next(task, rt, submission_id)  # sent again now, so that the next worker to start takes it
        except TRANSIENT:
            log.warning("%s: could not send the stage again; the reconciler will", label, exc_info=True)
        log.warning(
            "%s: the worker is shutting down; stage handed back, to resume from its checkpoint", label
        )
        return None
    except NotReady as exc:
        _release(rt, stage_id, task_id)
        log.warning("%s: not ready (%s); left pending", label, exc)
        return None
    except TRANSIENT as exc:
        if task.request.retries < rt.settings.task_max_retries:
            _release(rt, stage_id, task_id)
            raise _retry(task, rt, exc, label) from None
        _fail(rt, stage_id, task_id, exc, tail, label)
        return None
    except BaseException as exc:
        if _shutting_down() or not isinstance(exc, Exception):
            _release(rt, stage_id, task_id)  # the next worker takes it up (from its checkpoint)
            log.warning(
                "%s: interrupted by the worker's shutdown (%s); stage handed back", label, type(exc).__name__
            )
            raise
        _fail(rt, stage_id, task_id, exc, tail, label)
        return None
    finally:
        lease.stopped.set()
        logging.getLogger().removeHandler(tail)
        try:
            with rt.session() as session:
                _doing(session, worker, None)
        except TRANSIENT:
            pass


def _claim(
    task: Task, rt: Runtime, *, submission_id: int, seed: int | None, name: str, worker: str, task_id: str,
    label: str,
) -> tuple[int, dict] | None:  # fmt: skip
    """Claim the stage: (its seed, the context's fields), or None when it is done, held or stopped. A
    database error before anything is claimed retries the task."""
    try:
        with rt.session() as session:
            if seed is None:
                seed = session.get(Submission, submission_id).seeds[0]
            outcome, stage = pipeline.claim_stage(
                session=session, submission_id=submission_id, seed=seed, name=name, worker=worker,
                task_id=task_id, lease_seconds=rt.settings.lease_seconds, max_attempts=rt.settings.max_attempts,
            )  # fmt: skip
            if outcome != pipeline.Claim.claimed:
                log.info("%s: %s, nothing to do", label, outcome.value)
                return None
            fields = _context_fields(stage)
            attempts = stage.attempts
            _doing(session, worker, label)
    except TRANSIENT as exc:  # nothing claimed yet: just try again later
        raise _retry(task, rt, exc, label) from None
    log.info("%s: started (attempt %d, task %s)", label, attempts, task_id)
    return seed, fields


def _progress_reporter(rt: Runtime, stage_id: int, task_id: str, lease: Lease, label: str):
    """The stage's ProgressFn: writes its progress (throttled to one write per `progress_interval`), and
    stops the stage where it no longer holds it or the worker is shutting down."""
    last_write = [0.0]

    def progress(_stage: str, done: int, total: int) -> None:
        if lease.lost.is_set():
            raise StageAbandoned(label)
        if SHUTTING_DOWN.is_set():
            raise WorkerStopping(label)
        now = time.monotonic()
        if now - last_write[0] < rt.settings.progress_interval and done < total:
            return  # throttled (the first and the last write always go)
        last_write[0] = now
        try:
            with rt.session() as session:
                held = pipeline.record_progress(
                    session=session, stage_id=stage_id, task_id=task_id, fraction=done / max(total, 1)
                )
        except TRANSIENT:
            log.warning("%s: progress write failed", label, exc_info=True)
            return
        if not held:
            raise StageAbandoned(label)

    return progress


def _finish(rt: Runtime, submission_id: int, seed: int, name: str, task_id: str, finish: Callable,
            detail: dict, seconds: float, log_tail: str, label: str) -> None:  # fmt: skip
    """Store the outcome, in the transaction that checks the task still holds the stage."""
    with rt.session() as session:
        stage = pipeline.stage_row(session, submission_id, seed, name, lock=True)
        if not pipeline.holds(stage, task_id):
            raise StageAbandoned(label)
        finish(session, stage, detail, seconds, log_tail)


def _send_next(task: Task, rt: Runtime, submission_id: int) -> None:
    with rt.session() as session:
        dispatch_next(session=session, celery=task.app, submission=session.get(Submission, submission_id))


def _retry(task: Task, rt: Runtime, exc: Exception, label: str) -> Exception:
    """Celery's retry with exponential back-off and jitter (1, 2, 4 ... 60 s); past the retry limit it
    raises the error itself, which then ends the task (the reconciler hands the stage on later)."""
    countdown = min(60.0, 2.0**task.request.retries) * random.uniform(0.5, 1.0)
    log.warning("%s: transient error (%s); retry in %.1f s", label, exc, countdown)
    return task.retry(exc=exc, countdown=countdown, max_retries=rt.settings.task_max_retries, throw=False)


def _doing(session, worker: str, label: str | None) -> None:
    """What this worker is doing, for the organizers' worker list (its row is written by the reconciler thread)."""
    session.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.name == worker).values(current=label))


def _context_fields(stage: EvaluationStage) -> dict:
    submission = stage.submission
    phase = submission.phase
    return {
        "submission_id": submission.id,
        "stage_id": stage.id,
        "selection_data": submission.selection_bytes(),
        "file_sha256": submission.file_sha256,
        "selection_hash": submission.selection_hash,
        "pool_dir": phase.pool_dir,
        "pool_hash": phase.pool_hash,
        "tasks_dir": phase.tasks_path,
        "tier": phase.tier,
    }


def _complete(session, stage, detail, seconds, log_tail) -> None:
    pipeline.complete_stage(session=session, stage=stage, detail=detail, seconds=seconds, log_tail=log_tail)


def _summary(detail: dict) -> dict:
    """What the task returns (the chord's results): small; the stage row holds the whole detail."""
    return {k: v for k, v in detail.items() if isinstance(v, str | int | float | bool)}


def _release(rt: Runtime, stage_id: int, task_id: str) -> None:
    try:
        with rt.session() as session:
            pipeline.release_stage(session=session, stage_id=stage_id, task_id=task_id)
    except TRANSIENT:
        pass  # the lease will lapse and the reconciler will hand the stage on


def _fail(rt: Runtime, stage_id: int, task_id: str, exc: Exception, tail: LogTail, label: str) -> None:
    log.error("%s: failed\n%s", label, traceback.format_exc())
    message = f"{type(exc).__name__}: {exc}"
    try:
        with rt.session() as session:
            stage = session.get(EvaluationStage, stage_id)
            if stage is not None and pipeline.holds(stage, task_id):
                pipeline.fail_submission(
                    session=session, stage=stage, error=message, log_tail=tail.text(message)
                )
    except TRANSIENT:
        log.exception("%s: could not store the failure; the reconciler will retry the stage", label)
