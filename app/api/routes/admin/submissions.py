"""Every submission, whatever its team: list and read, cancel, re-run, hide or disqualify."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.admin_schemas import AdminSubmissionOut, Changed, Moderation, Reason, Rerun
from app.api.deps import AdminDep, CeleryDep, QueueDep, SessionDep, SubmissionId
from app.api.routes.submissions import submission_out
from app.models import Phase, Submission, SubmissionStatus, Team
from app.services import audit, moderation
from app.services.dispatch import dispatch_next
from app.services.queue import QueueView

router = APIRouter(prefix="/submissions")


def admin_out(s: Submission, queue: QueueView) -> AdminSubmissionOut:
    return submission_out(s, queue, schema=AdminSubmissionOut)


@router.get("", response_model=list[AdminSubmissionOut])
def list_all(
    session: SessionDep,
    queue: QueueDep,
    phase: str | None = None,
    team: str | None = None,
    status: SubmissionStatus | None = None,
    limit: int = Query(200, ge=1, le=5000),
) -> list[AdminSubmissionOut]:
    """Every submission (newest first), optionally of one phase, team or status."""
    query = select(Submission).order_by(Submission.id.desc()).limit(limit)
    if phase:
        query = query.join(Phase, Phase.id == Submission.phase_id).where(Phase.slug == phase)
    if team:
        query = query.join(Team, Team.id == Submission.team_id).where(Team.name == team)
    if status:
        query = query.where(Submission.status == status)
    return [admin_out(s, queue) for s in session.scalars(query)]


@router.get("/{submission_id}", response_model=AdminSubmissionOut)
def read_one(submission_id: SubmissionId, session: SessionDep, queue: QueueDep) -> AdminSubmissionOut:
    return admin_out(moderation.get_submission(session=session, submission_id=submission_id), queue)


@router.post("/{submission_id}/cancel", response_model=Changed)
def cancel(submission_id: SubmissionId, body: Reason, session: SessionDep, admin: AdminDep) -> Changed:
    """Stop an evaluation: the running task stops at its next heartbeat; the quota is given back."""
    submission = moderation.get_submission(session=session, submission_id=submission_id)
    before = submission.status.value
    moderation.cancel(session=session, submission=submission, reason=body.reason)
    return audit.commit_change(
        session=session, actor=admin, action="cancel", target=f"submission:{submission_id}",
        reason=body.reason, changes={"status": [before, "cancelled"]},
    )  # fmt: skip


@router.post("/{submission_id}/rerun", response_model=Rerun)
def rerun(
    submission_id: SubmissionId, body: Reason, session: SessionDep, admin: AdminDep, celery: CeleryDep
) -> Rerun:
    """Forget the results and evaluate again under the phase's current tier and seeds."""
    submission = moderation.get_submission(session=session, submission_id=submission_id)
    before = submission.status.value
    moderation.rerun(session=session, submission=submission)
    entry = audit.record(
        session=session, actor=admin, action="rerun", target=f"submission:{submission_id}", reason=body.reason,
        detail={"status_before": before, "seeds": submission.seeds},
    )  # fmt: skip
    session.commit()
    dispatch_next(session=session, celery=celery, submission=submission)
    session.commit()
    return Rerun(requeued=[submission_id], audit_id=entry.id)


@router.post("/{submission_id}/moderation", response_model=Changed)
def moderate(submission_id: SubmissionId, body: Moderation, session: SessionDep, admin: AdminDep) -> Changed:
    """Hide a submission from the board, or disqualify it (`true`), or restore it (`false`); its team sees
    the reason on its own submission."""
    submission = moderation.get_submission(session=session, submission_id=submission_id)
    diff = moderation.moderate(
        session=session, submission=submission, hidden=body.hidden, disqualified=body.disqualified,
        reason=body.reason,
    )  # fmt: skip
    return audit.commit_change(
        session=session, actor=admin, action="moderate", target=f"submission:{submission_id}",
        reason=body.reason, changes=diff,
    )  # fmt: skip
