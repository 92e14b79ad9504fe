"""Benchmarks and phases: create, edit, publish, re-run a whole phase, register baseline entries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.admin_schemas import (
    AdminPhaseOut,
    BenchmarkCreate,
    BenchmarkEdit,
    BenchmarkOut,
    Changed,
    PhaseCreate,
    PhaseEdit,
    Reason,
    Rerun,
)
from app.api.deps import AdminDep, CeleryDep, SessionDep, SettingsDep
from app.errors import ApiError
from app.models import Benchmark, Phase, Submission, utcnow
from app.models.teams import TEAM_NAME_MAX, TEAM_NAME_PATTERN
from app.schemas import Accepted
from app.services import audit
from app.services.dispatch import dispatch_next
from app.services.moderation import rerun_phase
from app.services.phases import create_benchmark, create_phase, get_benchmark, get_phase, update_phase
from app.services.submissions import SubmissionMeta, baselines_team, create_submission

router = APIRouter()


def commit(session: Session, what: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(409, "exists", f"{what} already exists") from None


def benchmark_out(b: Benchmark) -> BenchmarkOut:
    return BenchmarkOut.model_validate(b)


def admin_phase_out(session: Session, p: Phase) -> AdminPhaseOut:
    count = session.scalar(select(func.count()).select_from(Submission).where(Submission.phase_id == p.id))
    return AdminPhaseOut.model_validate(p).model_copy(update={"submissions": count})


@router.get("/benchmarks", response_model=list[BenchmarkOut])
def list_benchmarks(session: SessionDep) -> list[BenchmarkOut]:
    return [benchmark_out(b) for b in session.scalars(select(Benchmark).order_by(Benchmark.id))]


@router.post("/benchmarks", status_code=201, response_model=BenchmarkOut)
def add_benchmark(body: BenchmarkCreate, session: SessionDep, admin: AdminDep) -> BenchmarkOut:
    benchmark = create_benchmark(
        session=session, slug=body.slug, name=body.name, description=body.description
    )
    audit.record(
        session=session, actor=admin, action="create_benchmark", target=f"benchmark:{body.slug}",
        reason=body.reason, detail={"name": body.name},
    )  # fmt: skip
    commit(session, f"benchmark {body.slug!r}")
    return benchmark_out(benchmark)


@router.patch("/benchmarks/{slug}", response_model=Changed)
def edit_benchmark(slug: str, body: BenchmarkEdit, session: SessionDep, admin: AdminDep) -> Changed:
    benchmark = get_benchmark(session=session, slug=slug)
    changes = {}
    for name, value in body.model_dump(exclude_unset=True, exclude={"reason"}).items():
        if value is not None and getattr(benchmark, name) != value:
            changes[name] = [getattr(benchmark, name), value]
            setattr(benchmark, name, value)
    return audit.commit_change(
        session=session, actor=admin, action="edit_benchmark", target=f"benchmark:{slug}",
        reason=body.reason, changes=changes,
    )  # fmt: skip


@router.get("/phases", response_model=list[AdminPhaseOut])
def list_phases(session: SessionDep) -> list[AdminPhaseOut]:
    return [admin_phase_out(session, p) for p in session.scalars(select(Phase).order_by(Phase.id))]


@router.post("/phases", status_code=201, response_model=AdminPhaseOut)
def add_phase(body: PhaseCreate, session: SessionDep, admin: AdminDep) -> AdminPhaseOut:
    """Create a phase (and its benchmark if new). Its pool, tasks and tier are loaded once here, so a typo
    is a 422 now rather than a failed evaluation later."""
    benchmark = session.scalar(select(Benchmark).where(Benchmark.slug == body.benchmark))
    if benchmark is None:
        benchmark = create_benchmark(session=session, slug=body.benchmark, name=body.benchmark)
    if session.scalar(select(Phase.id).where(Phase.slug == body.slug)) is not None:
        raise ApiError(409, "exists", f"phase {body.slug!r} already exists")
    phase = create_phase(
        session=session, benchmark=benchmark, slug=body.slug, name=body.name or body.slug,
        description=body.description or "", pool_dir=body.pool_dir, tasks_dir=body.tasks_dir, tier=body.tier,
        seeds=body.seeds, quota_per_day=body.quota_per_day, quota_total=body.quota_total,
        opens_at=body.opens_at, closes_at=body.closes_at, results_visibility=body.results_visibility,
        duplicates=body.duplicates,
    )  # fmt: skip
    audit.record(
        session=session, actor=admin, action="create_phase", target=f"phase:{phase.slug}", reason=body.reason,
        detail=body.model_dump(mode="json", exclude={"reason"}),
    )  # fmt: skip
    commit(session, f"phase {body.slug!r}")
    return admin_phase_out(session, phase).model_copy(update={"warnings": phase_warnings(phase)})


def phase_warnings(phase: Phase) -> list[str]:
    """What a new phase's dates say that its organizer probably did not mean."""
    now = utcnow()
    warnings = []
    if phase.closes_at is not None and phase.closes_at <= now:
        warnings.append(
            f"closes_at {phase.closes_at:%Y-%m-%d %H:%M} UTC is in the past: the phase accepts no upload"
        )
    if phase.opens_at is not None and phase.closes_at is not None and phase.opens_at >= phase.closes_at:
        warnings.append("opens_at is not before closes_at: the phase is never open")
    return warnings


@router.patch("/phases/{slug}", response_model=Changed)
def edit_phase(slug: str, body: PhaseEdit, session: SessionDep, admin: AdminDep) -> Changed:
    """Change a phase's pool, tier, seeds, quotas, dates or visibility. New settings apply to later
    submissions; re-run the phase to apply them to earlier ones."""
    phase = get_phase(session=session, slug=slug)
    changes = body.model_dump(exclude_unset=True, exclude={"reason"})
    for required in ("name", "pool_dir", "tier", "seeds", "results_visibility", "duplicates"):
        if required in changes and changes[required] is None:
            raise ApiError(422, "field", f"{required} cannot be null")
    diff = update_phase(session=session, phase=phase, changes=changes)
    return audit.commit_change(
        session=session, actor=admin, action="edit_phase", target=f"phase:{slug}", reason=body.reason,
        changes=diff,
    )  # fmt: skip


@router.post("/phases/{slug}/publish", response_model=Changed)
def publish(slug: str, body: Reason, session: SessionDep, admin: AdminDep) -> Changed:
    """Make a hidden phase's results public: every team's scores appear on the board."""
    phase = get_phase(session=session, slug=slug)
    diff = update_phase(session=session, phase=phase, changes={"published": True})
    return audit.commit_change(
        session=session, actor=admin, action="publish_phase", target=f"phase:{slug}", reason=body.reason,
        changes=diff,
    )  # fmt: skip


@router.post("/phases/{slug}/rerun", response_model=Rerun)
def rerun_all(slug: str, body: Reason, session: SessionDep, admin: AdminDep, celery: CeleryDep) -> Rerun:
    """Evaluate every succeeded or failed submission of the phase again (e.g. after a tier fix)."""
    phase = get_phase(session=session, slug=slug)
    again, skipped = rerun_phase(session=session, phase=phase)
    entry = audit.record(
        session=session, actor=admin, action="rerun_phase", target=f"phase:{slug}", reason=body.reason,
        detail={"requeued": [s.id for s in again], "skipped_pending": skipped},
    )  # fmt: skip
    session.commit()
    for submission in again:
        dispatch_next(session=session, celery=celery, submission=submission)
    session.commit()
    return Rerun(requeued=[s.id for s in again], skipped_pending=skipped, audit_id=entry.id)


@router.post("/phases/{slug}/baselines", status_code=202, response_model=Accepted)
def add_baseline(
    slug: str,
    session: SessionDep,
    admin: AdminDep,
    settings: SettingsDep,
    celery: CeleryDep,
    file: Annotated[UploadFile, File(description="the baseline's selection, in any upload format")],
    method: Annotated[str, Form(min_length=1, max_length=100)],
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
    description: Annotated[str, Form(max_length=5000)] = "",
    team: Annotated[
        str, Form(min_length=1, max_length=TEAM_NAME_MAX, pattern=TEAM_NAME_PATTERN)
    ] = "baselines",
    allow_selection_download: Annotated[bool, Form()] = True,
) -> Accepted:
    """Register a baseline row: a selection marked as a baseline, owned by the `baselines` team (or the one
    named), evaluated like any other submission; outside the quotas and the phase's dates."""
    if not reason.strip():
        raise ApiError(422, "field", "give a reason (it is written to the audit log)")
    phase = get_phase(session=session, slug=slug)
    owner = baselines_team(session=session, name=team)
    data = file.file.read(settings.upload_max_bytes + 1)
    submission = create_submission(
        session=session, team=owner, phase=phase, data=data, is_baseline=True,
        meta=SubmissionMeta(
            method=method.strip(), description=description, allow_selection_download=allow_selection_download
        ),
        max_bytes=settings.upload_max_bytes,
    )  # fmt: skip
    audit.record(
        session=session, actor=admin, action="register_baseline", target=f"submission:{submission.id}",
        reason=reason, detail={"phase": slug, "method": submission.method, "n": submission.n},
    )  # fmt: skip
    session.commit()
    dispatch_next(session=session, celery=celery, submission=submission)
    session.commit()
    return Accepted(
        id=submission.id, status=submission.status.value, status_url=f"/api/v1/admin/submissions/{submission.id}",
        n=submission.n, retained_fraction=submission.retained_fraction, selection_hash=submission.selection_hash,
    )  # fmt: skip
