"""The evaluation pipeline's state in the database: the source of truth the workers and the reconciler read.

Each stage row is claimed by one task at a time (a lease kept fresh by heartbeats); a claim of a finished
stage is a no-op, so every task may safely run twice. `next_steps` reads what remains to be done, and both the
tasks (after a stage) and the reconciler (after a lost message or a dead worker) enqueue from it.
"""

from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contract import Stage
from app.models import (
    PENDING_STATUSES,
    EvaluationRun,
    EvaluationStage,
    Result,
    StageStatus,
    Submission,
    SubmissionStatus,
    utcnow,
)
from app.services.submissions import FINETUNE_PREFIX, STAGE_AGGREGATE, STAGE_PRETRAIN, STAGE_VALIDATE

# Share of the whole evaluation each stage stands for, for the overall progress and ETA (per seed, except
# validate); pretraining dominates at every tier.
WEIGHTS = {STAGE_VALIDATE: 0.02, STAGE_PRETRAIN: 0.60, "finetunes": 0.35, STAGE_AGGREGATE: 0.03}


class Claim(enum.StrEnum):
    claimed = "claimed"  # the caller now holds the stage and must run it
    done = "done"  # already succeeded: nothing to do
    held = "held"  # another live task holds it
    stopped = "stopped"  # the submission is finished, failed or cancelled


@dataclass(frozen=True)
class Step:
    """One thing to enqueue: a stage task, or (finetunes) the chord of a seed's finetunes and its aggregate."""

    kind: str  # validate | pretrain | finetunes | aggregate
    seed: int
    tasks: list[str] = field(default_factory=list)  # finetunes: the datasets still to run

    @property
    def queue(self) -> str:
        return (Stage.finetune if self.kind == "finetunes" else Stage(self.kind)).queue


def stage_row(
    session: Session, submission_id: int, seed: int, name: str, *, lock: bool = False
) -> EvaluationStage:
    query = select(EvaluationStage).where(
        EvaluationStage.submission_id == submission_id,
        EvaluationStage.seed == seed,
        EvaluationStage.name == name,
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    stage = session.scalar(query)
    if stage is None:
        raise LookupError(f"submission {submission_id} has no stage {name!r} for seed {seed}")
    return stage


def is_stale(stage: EvaluationStage, now: datetime, lease_seconds: float) -> bool:
    return stage.heartbeat_at is None or now - stage.heartbeat_at > timedelta(seconds=lease_seconds)


def claim_stage(
    *,
    session: Session,
    submission_id: int,
    seed: int,
    name: str,
    worker: str,
    task_id: str,
    lease_seconds: float,
    max_attempts: int,
    now: datetime | None = None,
) -> tuple[Claim, EvaluationStage]:
    now = now or utcnow()
    stage = stage_row(session, submission_id, seed, name, lock=True)
    submission = stage.submission
    if submission.status not in PENDING_STATUSES:
        return Claim.stopped, stage
    if stage.status == StageStatus.succeeded:
        return Claim.done, stage
    if stage.status == StageStatus.running and not is_stale(stage, now, lease_seconds):
        return Claim.held, stage  # includes a redelivery of the message whose task still runs
    if stage.status == StageStatus.running and give_up_if_exhausted(
        session=session, stage=stage, max_attempts=max_attempts, now=now
    ):
        return Claim.stopped, stage
    stage.status = StageStatus.running
    stage.attempts += 1
    stage.worker, stage.task_id = worker, task_id
    stage.heartbeat_at = now
    stage.started_at = stage.started_at or now
    submission.status = SubmissionStatus.running
    submission.started_at = submission.started_at or now
    submission.current_stage = display_name(stage)
    return Claim.claimed, stage


def give_up_if_exhausted(
    *, session: Session, stage: EvaluationStage, max_attempts: int, now: datetime
) -> bool:
    """A stage whose worker was lost `max_attempts` times fails its submission (with the log tail its last
    worker's lease stored) rather than being handed on for ever; True when it did."""
    if stage.attempts < max_attempts:
        return False
    fail_submission(
        session=session,
        stage=stage,
        error=f"stage {display_name(stage)} was interrupted {stage.attempts} times (worker lost); giving up",
        log_tail=stage.log_tail,
        now=now,
    )
    return True


def display_name(stage: EvaluationStage) -> str:
    seeds = stage.submission.seeds
    return (
        stage.name if len(seeds) == 1 or stage.name == STAGE_VALIDATE else f"{stage.name} (seed {stage.seed})"
    )


def holds(stage: EvaluationStage, task_id: str) -> bool:
    return (
        stage.status == StageStatus.running
        and stage.task_id == task_id
        and stage.submission.status in PENDING_STATUSES
    )


def heartbeat(
    *, session: Session, stage_id: int, task_id: str, log_tail: str | None = None, now: datetime | None = None
) -> bool:
    """Renew the lease (and keep the stage's log tail so far); False when the caller no longer holds the
    stage (cancelled, or taken over)."""
    stage = session.get(EvaluationStage, stage_id)
    if stage is None or not holds(stage, task_id):
        return False
    stage.heartbeat_at = now or utcnow()
    if log_tail:
        stage.log_tail = log_tail
    return True


def record_progress(
    *, session: Session, stage_id: int, task_id: str, fraction: float, now: datetime | None = None
) -> bool:
    """Stage progress, and the submission's overall progress, current stage and ETA (a linear estimate from
    the time since it started). False when the caller no longer holds the stage."""
    now = now or utcnow()
    stage = session.get(EvaluationStage, stage_id)
    if stage is None or not holds(stage, task_id):
        return False
    stage.progress = min(max(fraction, 0.0), 1.0)
    stage.heartbeat_at = now
    _update_overall(stage.submission, now, current=stage)
    return True


def _update_overall(submission: Submission, now: datetime, current: EvaluationStage | None = None) -> None:
    per_seed = (1.0 - WEIGHTS[STAGE_VALIDATE]) / len(submission.seeds)
    n_finetunes = max(
        1, sum(s.name.startswith(FINETUNE_PREFIX) for s in submission.stages) // len(submission.seeds)
    )
    total = 0.0
    for s in submission.stages:
        done = 1.0 if s.status == StageStatus.succeeded else s.progress
        if s.name == STAGE_VALIDATE:
            total += WEIGHTS[STAGE_VALIDATE] * done
        elif s.name.startswith(FINETUNE_PREFIX):
            total += per_seed * WEIGHTS["finetunes"] / n_finetunes * done
        else:
            total += per_seed * WEIGHTS[s.name] * done
    submission.progress = min(total, 1.0)
    if current is not None:
        submission.current_stage = display_name(current)
    if submission.started_at and 0.02 < submission.progress < 1.0:
        elapsed = (now - submission.started_at).total_seconds()
        submission.eta_at = now + timedelta(
            seconds=elapsed / submission.progress * (1.0 - submission.progress)
        )


def complete_stage(
    *,
    session: Session,
    stage: EvaluationStage,
    detail: dict | None,
    seconds: float,
    log_tail: str | None,
    now=None,
) -> None:
    now = now or utcnow()
    stage.status = StageStatus.succeeded
    stage.progress = 1.0
    stage.finished_at = now
    stage.seconds = seconds
    stage.detail = detail
    stage.log_tail = log_tail
    _update_overall(stage.submission, now)


def release_stage(*, session: Session, stage_id: int, task_id: str) -> None:
    """Give a stage back (pending) before a retry, so the retried task can claim it at once."""
    stage = session.get(EvaluationStage, stage_id)
    if stage is not None and holds(stage, task_id):
        stage.status = StageStatus.pending
        stage.attempts -= 1  # a clean hand-back is not an interruption
        stage.heartbeat_at = None


def fail_submission(
    *, session: Session, stage: EvaluationStage, error: str, log_tail: str | None, now: datetime | None = None
) -> None:
    now = now or utcnow()
    stage.status = StageStatus.failed
    stage.finished_at = now
    stage.log_tail = log_tail
    submission = stage.submission
    submission.status = SubmissionStatus.failed
    submission.error = f"{display_name(stage)}: {error}"
    submission.log_tail = log_tail
    submission.finished_at = now
    submission.eta_at = None
    for other in submission.stages:
        if other.status in (StageStatus.pending, StageStatus.running) and other is not stage:
            other.status = StageStatus.cancelled


def store_results(
    *,
    session: Session,
    stage: EvaluationStage,
    results: dict,
    seconds: float,
    log_tail: str | None,
    now: datetime | None = None,
) -> bool:
    """Write one seed's results, mark its aggregate stage done and, after the last seed, the submission
    succeeded, all in the caller's one transaction. False (nothing written) if they were already there."""
    now = now or utcnow()
    submission = stage.submission
    exists = session.scalar(
        select(EvaluationRun.id).where(
            EvaluationRun.submission_id == submission.id, EvaluationRun.seed == stage.seed
        )
    )
    if exists is not None:
        return False
    try:
        with session.begin_nested():  # a savepoint: a concurrent writer of the same seed fails here alone
            session.add(
                EvaluationRun(
                    submission_id=submission.id,
                    seed=stage.seed,
                    tier_name=results["tier"],
                    tier_hash=results["tier_hash"],
                    code_version=results["code_version"],
                    mean_miou=results["mean_miou"],
                    mean_normdel=results["mean_normdel"],
                    results=results,
                    created_at=now,
                )
            )
            session.add_all(
                Result(
                    submission_id=submission.id,
                    seed=stage.seed,
                    dataset=name,
                    miou=r["miou"],
                    normdel=r["normdel"],
                )
                for name, r in results["datasets"].items()
            )
            session.flush()
    except IntegrityError:
        return False
    complete_stage(
        session=session,
        stage=stage,
        detail={"mean_normdel": results["mean_normdel"]},
        seconds=seconds,
        log_tail=log_tail,
        now=now,
    )
    if all(s.status == StageStatus.succeeded for s in submission.stages):
        runs = list(
            session.scalars(select(EvaluationRun).where(EvaluationRun.submission_id == submission.id))
        )
        submission.mean_normdel = statistics.fmean(r.mean_normdel for r in runs)
        submission.mean_miou = statistics.fmean(r.mean_miou for r in runs)
        submission.status = SubmissionStatus.succeeded
        submission.current_stage = "done"
        submission.progress = 1.0
        submission.finished_at = now
        submission.eta_at = None
    return True


def next_steps(submission: Submission) -> list[Step]:
    """What to enqueue so the evaluation moves on from where the database says it is. Stages already
    succeeded are skipped; an empty list means there is nothing left (or the submission is finished)."""
    if submission.status not in PENDING_STATUSES:
        return []
    by_key = {(s.seed, s.name): s for s in submission.stages}
    first = submission.seeds[0]
    if by_key[(first, STAGE_VALIDATE)].status != StageStatus.succeeded:
        return [Step(STAGE_VALIDATE, first)]
    for seed in submission.seeds:
        if by_key[(seed, STAGE_PRETRAIN)].status != StageStatus.succeeded:
            return [Step(STAGE_PRETRAIN, seed)]
        finetunes = [s for s in submission.stages if s.seed == seed and s.name.startswith(FINETUNE_PREFIX)]
        if any(s.status != StageStatus.succeeded for s in finetunes):
            # the whole chord: finished finetunes return at once, and the chord's callback aggregates
            return [Step("finetunes", seed, [s.name.removeprefix(FINETUNE_PREFIX) for s in finetunes])]
        if by_key[(seed, STAGE_AGGREGATE)].status != StageStatus.succeeded:
            return [Step(STAGE_AGGREGATE, seed)]
    return []


def cancel_submission(
    *, session: Session, submission: Submission, reason: str, now: datetime | None = None
) -> bool:
    """Stop a pending evaluation: the running task sees it at its next heartbeat or progress report and
    stops; queued messages find it stopped. False if it had already ended. (The caller writes the audit log.)"""
    if submission.status not in PENDING_STATUSES:
        return False
    submission.status = SubmissionStatus.cancelled
    submission.error = f"cancelled: {reason}"
    submission.finished_at = now or utcnow()
    submission.eta_at = None
    for stage in submission.stages:
        if stage.status in (StageStatus.pending, StageStatus.running):
            stage.status = StageStatus.cancelled
    return True


def reset_for_rerun(
    *, session: Session, submission: Submission, seeds: list[int], task_names: list[str]
) -> None:
    """Forget a submission's evaluation (results, runs, stages) and queue it again from validation, under the
    phase's current seeds and tasks (e.g. after a tier fix). The caller commits, then dispatches."""
    from app.services.submissions import pipeline_stages

    submission.runs.clear()
    submission.results.clear()
    submission.stages.clear()
    session.flush()
    submission.seeds = seeds
    submission.status = SubmissionStatus.queued
    submission.current_stage = "queued"
    submission.progress = 0.0
    for column in (
        "eta_at",
        "error",
        "log_tail",
        "mean_normdel",
        "mean_miou",
        "started_at",
        "finished_at",
        "dispatched_at",
    ):
        setattr(submission, column, None)
    # through the relationship, so this session's `submission.stages` (what next_steps reads) holds them
    submission.stages.extend(pipeline_stages(submission, task_names))
    session.flush()
