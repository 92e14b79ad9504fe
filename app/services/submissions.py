"""Creating and reading submissions. Upload validation is the evaluator's `load_selection`, the same code
`delbench evaluate` runs, so the server accepts exactly the selections the protocol accepts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.contract import Stage
from app.db import is_postgres
from app.errors import ApiError
from app.models import QUOTA_STATUSES, DuplicatePolicy, EvaluationStage, Phase, Submission, Team, utcnow
from app.services.phases import pool_for, seeds_for, tier_for
from app.services.teams import create_team
from evaluator.selection import SelectionError, load_selection
from evaluator.store import list_tasks

STAGE_VALIDATE, STAGE_PRETRAIN, STAGE_AGGREGATE = (
    Stage.validate.value,
    Stage.pretrain.value,
    Stage.aggregate.value,
)
FINETUNE_PREFIX = f"{Stage.finetune.value}:"  # a finetune's stage row is named finetune:<dataset>


@dataclass(frozen=True)
class SubmissionMeta:
    method: str = "unnamed"
    description: str = ""
    code_url: str | None = None
    paper_url: str | None = None
    allow_selection_download: bool = False


def create_submission(
    *,
    session: Session,
    team: Team,
    phase: Phase,
    data: bytes,
    meta: SubmissionMeta,
    max_bytes: int,
    now: datetime | None = None,
    is_baseline: bool = False,
    idempotency_key: str | None = None,
) -> Submission:
    """Validate, check the quota, store the submission with its file and its pending stages (flushed, not
    committed: the caller commits, then enqueues). Any refusal raises ApiError before anything is written."""
    now = now or utcnow()
    if not is_baseline and not phase.is_open(now):  # organizers add baselines whenever they like
        when = (
            f"opens {phase.opens_at:%Y-%m-%d %H:%M} UTC"
            if phase.opens_at and now < phase.opens_at
            else "is closed"
        )
        raise ApiError(403, "phase_closed", f"phase {phase.slug!r} {when}: it accepts no submission now")
    pool = pool_for(phase)
    try:
        selection = load_selection(data, pool.index_of, max_bytes=max_bytes)
    except SelectionError as exc:
        status = 413 if exc.rule == "too_large" else 422
        raise ApiError(status, exc.rule, str(exc), line=exc.line, sample_id=exc.sample_id) from None
    tier = tier_for(phase)
    task_names = list_tasks(phase.tasks_path)
    if not is_baseline and phase.duplicates == DuplicatePolicy.refuse:
        earlier = earlier_same_selection(
            session=session, team=team, phase=phase, selection_hash=selection.selection_hash
        )
        if earlier is not None:
            raise ApiError(
                409,
                "duplicate_selection",
                f"your submission {earlier.id} in phase {phase.slug!r} has the same selection "
                f"(hash {selection.selection_hash[:12]}); this phase takes each selection once",
            )
    if not is_baseline:
        _check_quota(session=session, team=team, phase=phase, now=now)
    sha = hashlib.sha256(data).hexdigest()
    submission = Submission(
        team_id=team.id,
        phase_id=phase.id,
        idempotency_key=idempotency_key,
        selection_data=data,
        file_sha256=sha,
        file_bytes=len(data),
        selection_hash=selection.selection_hash,
        n=selection.n,
        pool_size=selection.pool_size,
        retained_fraction=selection.retained_fraction,
        seeds=seeds_for(phase, tier),
        method=meta.method,
        description=meta.description,
        code_url=meta.code_url,
        paper_url=meta.paper_url,
        allow_selection_download=meta.allow_selection_download,
        is_baseline=is_baseline,
        created_at=now,
        current_stage="queued",
    )
    session.add(submission)
    session.flush()
    session.add_all(pipeline_stages(submission, task_names))
    session.flush()
    return submission


def pipeline_stages(submission: Submission, task_names: list[str]) -> list[EvaluationStage]:
    """The stage rows of a submission's whole evaluation: the pipeline's to-do list in the database."""
    seeds = submission.seeds
    names = [(seeds[0], STAGE_VALIDATE)]
    for seed in seeds:
        names += (
            [(seed, STAGE_PRETRAIN)]
            + [(seed, FINETUNE_PREFIX + t) for t in task_names]
            + [(seed, STAGE_AGGREGATE)]
        )
    return [EvaluationStage(submission_id=submission.id, seed=seed, name=name) for seed, name in names]


def _check_quota(*, session: Session, team: Team, phase: Phase, now: datetime) -> None:
    """Atomic with the insert that follows: on PostgreSQL the team's row is locked until commit, so two
    uploads of one team are serialised; SQLite transactions already hold the write lock (BEGIN IMMEDIATE)."""
    if phase.quota_total is None and phase.quota_per_day is None:
        return
    if is_postgres(session):
        session.execute(select(Team.id).where(Team.id == team.id).with_for_update())
    counted = (
        select(func.count())
        .select_from(Submission)
        .where(
            Submission.team_id == team.id,
            Submission.phase_id == phase.id,
            Submission.status.in_(QUOTA_STATUSES),
            Submission.is_baseline.is_(False),
        )
    )
    if phase.quota_total is not None:
        used = session.scalar(counted)
        if used >= phase.quota_total:
            raise ApiError(
                429,
                "quota_total",
                f"quota spent: {used} of {phase.quota_total} submissions to phase {phase.slug!r}",
            )
    if phase.quota_per_day is not None:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        used = session.scalar(counted.where(Submission.created_at >= day_start))
        if used >= phase.quota_per_day:
            raise ApiError(
                429,
                "quota_day",
                f"daily quota spent: {used} of {phase.quota_per_day} submissions today (UTC) to phase {phase.slug!r}",
            )


BASELINES_TEAM = "baselines"


def baselines_team(*, session: Session, name: str = BASELINES_TEAM) -> Team:
    """The team that owns organizer-registered baseline rows (created without a token: nobody logs in as it)."""
    return session.scalar(select(Team).where(Team.name == name)) or create_team(session=session, name=name)


def earlier_same_selection(
    *, session: Session, team: Team, phase: Phase, selection_hash: str, before: int | None = None
) -> Submission | None:
    """The team's latest submission of this selection in this phase (below ID `before`) that still counts
    (not failed or cancelled), which the phase's duplicate policy weighs a new upload against."""
    query = select(Submission).where(
        Submission.team_id == team.id,
        Submission.phase_id == phase.id,
        Submission.selection_hash == selection_hash,
        Submission.status.in_(QUOTA_STATUSES),
    )
    if before is not None:
        query = query.where(Submission.id < before)
    return session.scalar(query.order_by(Submission.id.desc()).limit(1))


def replayed_submission(*, session: Session, team: Team, key: str, data: bytes) -> Submission | None:
    """The submission `team` already made with Idempotency-Key `key`, if any. The same key with another
    file is refused: a key names one upload, as payment APIs have it."""
    first = session.scalar(
        select(Submission).where(Submission.team_id == team.id, Submission.idempotency_key == key)
    )
    if first is not None and first.file_sha256 != hashlib.sha256(data).hexdigest():
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"Idempotency-Key {key[:80]!r} was used for submission {first.id} with another file; "
            "use a new key for a new upload",
        )
    return first


def get_team_submission(*, session: Session, team: Team, submission_id: int) -> Submission:
    submission = session.get(Submission, submission_id)
    # another team's submission is "not found", so IDs reveal nothing
    if submission is None or (submission.team_id != team.id and not team.is_admin):
        raise ApiError(404, "submission_not_found", f"no submission {submission_id} of team {team.name!r}")
    return submission


def list_team_submissions(
    *, session: Session, team: Team, phase: Phase | None = None, limit: int = 100
) -> list[Submission]:
    query = select(Submission).where(Submission.team_id == team.id)
    if phase is not None:
        query = query.where(Submission.phase_id == phase.id)
    return list(session.scalars(query.order_by(Submission.id.desc()).limit(limit)))
