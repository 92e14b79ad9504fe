"""Uploading a selection to a phase, and reading a team's submissions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from sqlalchemy.exc import IntegrityError

from app.api.deps import CeleryDep, CurrentTeam, QueueDep, SessionDep, SettingsDep, SubmissionId
from app.errors import ApiError
from app.models import DuplicatePolicy, Submission, Team
from app.models.submissions import IDEMPOTENCY_KEY_MAX
from app.schemas import Accepted, CancelRequest, ErrorBody, SubmissionOut
from app.services import moderation
from app.services.dispatch import dispatch_next
from app.services.leaderboard import scores, submission_visible
from app.services.phases import get_phase
from app.services.queue import QueueView
from app.services.submissions import (
    SubmissionMeta,
    create_submission,
    earlier_same_selection,
    get_team_submission,
    list_team_submissions,
    replayed_submission,
)

router = APIRouter(tags=["submissions"])

ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 404, 413, 422, 429)}


def _url(value: str | None, field: str) -> str | None:
    if not value:
        return None
    if not value.startswith(("https://", "http://")) or len(value) > 500:
        raise ApiError(422, "field", f"{field} must be an http(s) URL of at most 500 characters")
    return value


@router.post("/phases/{slug}/submissions", status_code=202, response_model=Accepted, responses=ERRORS)
def upload_submission(
    slug: str,
    request: Request,
    session: SessionDep,
    team: CurrentTeam,
    settings: SettingsDep,
    celery: CeleryDep,
    file: Annotated[
        UploadFile,
        File(description="the selection: one pool ID per line, a JSON list, or CSV with an `id` column"),
    ],
    method: Annotated[str, Form(min_length=1, max_length=100)] = "unnamed",
    description: Annotated[str, Form(max_length=5000)] = "",
    code_url: Annotated[str | None, Form()] = None,
    paper_url: Annotated[str | None, Form()] = None,
    allow_selection_download: Annotated[bool, Form()] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX,
            description="any unique string (a UUID): a retry with the same key returns the first answer "
            "instead of making a second submission",
        ),
    ] = None,
) -> Accepted:
    """Validate the selection exactly as `delbench evaluate` does, store it and queue its evaluation.
    A refused upload stores and queues nothing."""
    request.app.state.rate_limits.upload(team.id)
    phase = get_phase(session=session, slug=slug)
    meta = SubmissionMeta(
        method=method.strip() or "unnamed",
        description=description,
        code_url=_url(code_url, "code_url"),
        paper_url=_url(paper_url, "paper_url"),
        allow_selection_download=allow_selection_download,
    )
    data = file.file.read(settings.upload_max_bytes + 1)
    if idempotency_key is not None:
        first = replayed_submission(session=session, team=team, key=idempotency_key, data=data)
        if first is not None:
            return _accepted(request, first)
    session.commit()  # end the read transaction (on SQLite, its write lock) before the slow validation
    try:
        submission = create_submission(
            session=session,
            team=team,
            phase=phase,
            data=data,
            meta=meta,
            max_bytes=settings.upload_max_bytes,
            idempotency_key=idempotency_key,
        )
        session.commit()  # the file is a column of the row: stored with it, or not at all
    except IntegrityError:
        session.rollback()
        first = idempotency_key and replayed_submission(
            session=session, team=team, key=idempotency_key, data=data
        )
        if not first:
            raise
        return _accepted(request, first)  # the same key raced in twice: the one that committed answers
    except BaseException:
        session.rollback()
        raise
    dispatch_next(session=session, celery=celery, submission=submission)
    session.commit()
    accepted = _accepted(request, submission)
    if phase.duplicates == DuplicatePolicy.warn:
        earlier = earlier_same_selection(
            session=session,
            team=team,
            phase=phase,
            selection_hash=submission.selection_hash,
            before=submission.id,
        )
        if earlier is not None:
            accepted = accepted.model_copy(
                update={
                    "duplicate_of": earlier.id,
                    "warnings": [
                        f"the same selection as your submission {earlier.id} (hash {submission.selection_hash[:12]}): "
                        "both will be evaluated and both count against the quota"
                    ],
                }
            )
    return accepted


def _accepted(request: Request, submission: Submission) -> Accepted:
    return Accepted(
        id=submission.id,
        status=submission.status.value,
        status_url=str(request.url_for("read_submission", submission_id=submission.id)),
        n=submission.n,
        retained_fraction=submission.retained_fraction,
        selection_hash=submission.selection_hash,
    )


@router.get("/submissions/{submission_id}", response_model=SubmissionOut, responses=ERRORS)
def read_submission(
    submission_id: SubmissionId, session: SessionDep, team: CurrentTeam, queue: QueueDep
) -> SubmissionOut:
    """Status, current stage, progress, place in the queue and ETA, results (when done) and error (when
    failed). Your own submissions, and the organizers' baselines (public entries) of any team."""
    submission = session.get(Submission, submission_id)
    if submission is not None and submission.is_baseline and submission_visible(submission, team):
        return submission_out(submission, queue, viewer=team)
    return submission_out(get_team_submission(session=session, team=team, submission_id=submission_id), queue)


@router.post(
    "/submissions/{submission_id}/cancel",
    response_model=SubmissionOut,
    responses={**ERRORS, 409: {"model": ErrorBody}},
)
def cancel_own_submission(
    submission_id: SubmissionId, body: CancelRequest, session: SessionDep, team: CurrentTeam, queue: QueueDep
) -> SubmissionOut:
    """Withdraw your own queued or running submission: a running task stops at its next heartbeat, and the
    quota slot is given back. Written to the audit log like an organizer's cancel."""
    submission = get_team_submission(session=session, team=team, submission_id=submission_id)
    moderation.withdraw(session=session, team=team, submission=submission, reason=body.reason)
    return submission_out(submission, queue)


@router.get("/submissions", response_model=list[SubmissionOut], responses=ERRORS)
def list_submissions(
    session: SessionDep, team: CurrentTeam, queue: QueueDep, phase: str | None = None
) -> list[SubmissionOut]:
    """The calling team's submissions, newest first (optionally of one phase)."""
    selected = get_phase(session=session, slug=phase) if phase else None
    return [
        submission_out(s, queue) for s in list_team_submissions(session=session, team=team, phase=selected)
    ]


def submission_out(
    s: Submission,
    queue: QueueView,
    *,
    viewer: Team | None = None,
    schema: type[SubmissionOut] = SubmissionOut,
) -> SubmissionOut:
    """`viewer`: someone outside the submission's team reading a public entry, who is not shown its errors
    and logs (server paths, other teams' data). `schema`: SubmissionOut or a subclass with more of the row."""
    standing = queue.standing(s)
    private = viewer is not None and not viewer.is_admin and viewer.id != s.team_id
    out = schema.model_validate(s)
    return out.model_copy(
        update={
            "eta_seconds": standing.eta_seconds,
            "queue_position": standing.position,
            "queue_ahead": standing.ahead,
            "starts_in_seconds": standing.starts_in_seconds,
            "error": None if private else s.error,
            "log_tail": None if private else s.log_tail,
            "results": scores(s.results) if s.status.value == "succeeded" else None,
            "stages": [  # a stage's log only where it failed, and only for its team
                st.model_copy(
                    update={"log_tail": st.log_tail if st.status == "failed" and not private else None}
                )
                for st in out.stages
            ],
        }
    )
