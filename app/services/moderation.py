"""Organizer actions on submissions: hide or disqualify, cancel, re-run (one, or every one of a phase).

The pipeline's own functions (`cancel_submission`, `reset_for_rerun`) change the evaluation state; this
module decides which submissions they apply to. The caller writes the audit log, commits, then dispatches
(except `withdraw`, a team's own cancel, which does both).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import PENDING_STATUSES, Phase, Submission, SubmissionStatus, Team
from app.services import audit, pipeline
from app.services.phases import seeds_for, tier_for
from evaluator.store import list_tasks


def get_submission(*, session: Session, submission_id: int) -> Submission:
    submission = session.get(Submission, submission_id)
    if submission is None:
        raise ApiError(404, "submission_not_found", f"no submission {submission_id}")
    return submission


def moderate(
    *, session: Session, submission: Submission, hidden: bool | None, disqualified: bool | None, reason: str
) -> dict:
    """Set the moderation flags; returns {flag: [old, new]} for what changed. A hidden or disqualified
    submission leaves the board (its team still sees it, with the reason)."""
    diff = {}
    for name, value in (("hidden", hidden), ("disqualified", disqualified)):
        if value is not None and getattr(submission, name) != value:
            diff[name] = [getattr(submission, name), value]
            setattr(submission, name, value)
    if diff:
        submission.moderation_reason = reason if (submission.hidden or submission.disqualified) else None
    return diff


def cancel(*, session: Session, submission: Submission, reason: str) -> None:
    if not pipeline.cancel_submission(session=session, submission=submission, reason=reason):
        raise ApiError(
            409, "not_pending", f"submission {submission.id} has already ended ({submission.status.value})"
        )


def withdraw(*, session: Session, team: Team, submission: Submission, reason: str) -> None:
    """A team cancels its own queued or running submission (API or page): audited like an organizer's
    cancel, and committed. The caller has checked that the submission is the team's."""
    reason = reason.strip() or "withdrawn by its team"
    before = submission.status.value
    cancel(session=session, submission=submission, reason=reason)
    audit.commit_change(
        session=session, actor=team, action="cancel", target=f"submission:{submission.id}",
        reason=reason, changes={"status": [before, "cancelled"]},
    )  # fmt: skip


def rerun(*, session: Session, submission: Submission) -> None:
    """Evaluate again from validation under the phase's current tier, seeds and tasks."""
    if submission.status in PENDING_STATUSES:
        raise ApiError(
            409,
            "still_pending",
            f"submission {submission.id} is {submission.status.value}: cancel it before re-running it",
        )
    phase = submission.phase
    pipeline.reset_for_rerun(
        session=session,
        submission=submission,
        seeds=seeds_for(phase, tier_for(phase)),
        task_names=list_tasks(phase.tasks_path),
    )


def rerun_phase(*, session: Session, phase: Phase) -> tuple[list[Submission], list[int]]:
    """Re-run every succeeded or failed submission of `phase` (e.g. after a tier fix); cancelled ones stay
    cancelled, and pending ones are left to finish (their ids are returned as skipped)."""
    rows = session.scalars(
        select(Submission).where(Submission.phase_id == phase.id).order_by(Submission.id)
    ).all()
    again, skipped = [], []
    for submission in rows:
        if submission.status in PENDING_STATUSES:
            skipped.append(submission.id)
        elif submission.status in (SubmissionStatus.succeeded, SubmissionStatus.failed):
            rerun(session=session, submission=submission)
            again.append(submission)
    return again, skipped
