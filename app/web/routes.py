"""HTML pages: the phase leaderboards, submission pages, and a token sign-in for participants.

A page's viewer comes from the `delbench_token` cookie (set by /login; HttpOnly, SameSite=Lax). The cookie
is read by these GET pages only, never by the API, whose routes take `Authorization: Bearer` alone, so a
cross-site form can never act with it. Every score a page shows goes through the same visibility rules as
the API (`leaderboard()` and `submission_visible()`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from app.api.deps import QueueDep, SessionDep, SubmissionId, client_address
from app.api.routes.phases import csv_response
from app.errors import ApiError
from app.models import PENDING_STATUSES, Phase, Submission, Team, utcnow
from app.services import moderation
from app.services.leaderboard import (
    BoardView,
    board_csv,
    leaderboard,
    random_baseline_near,
    scores,
    submission_visible,
)
from app.services.queue import QueueView
from app.services.submissions import list_team_submissions
from app.services.teams import authenticate, authenticate_limited
from app.web import chart as charts
from app.web.format import LABELS, progress_line, register_filters

COOKIE = "delbench_token"
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
register_filters(TEMPLATES.env)

router = APIRouter(include_in_schema=False)


def page_viewer(request: Request, session: SessionDep) -> Team | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return authenticate(session=session, token=token)
    except ApiError:  # revoked or disabled since sign-in: the page is shown as to anyone
        return None


Viewer = Annotated[Team | None, Depends(page_viewer)]


def render(request: Request, name: str, viewer: Team | None, code: int = 200, **context) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"viewer": viewer, **context},
        status_code=code,
        headers={"Cache-Control": "no-store"},
    )


def not_found(request: Request, viewer: Team | None, message: str) -> HTMLResponse:
    return render(request, "error.html", viewer, code=404, title="Not found", message=message)


def phase_or_none(session, slug: str) -> Phase | None:
    return session.scalar(select(Phase).where(Phase.slug == slug))


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep, viewer: Viewer):
    """The board itself where there is one phase, else the list of phases."""
    phases = list(session.scalars(select(Phase).order_by(Phase.id)))
    if len(phases) == 1:
        return RedirectResponse(f"/phases/{phases[0].slug}", status_code=307)
    return render(request, "index.html", viewer, phases=phases, now=utcnow())


@router.get("/phases", response_class=HTMLResponse)
def phases_page(request: Request, session: SessionDep, viewer: Viewer):
    """Every phase, always (the navigation's "Phases"; `/` goes straight to a lone phase's board)."""
    phases = list(session.scalars(select(Phase).order_by(Phase.id)))
    return render(request, "index.html", viewer, phases=phases, now=utcnow())


@router.get("/phases/{slug}", response_class=HTMLResponse)
def board_page(
    slug: str, request: Request, session: SessionDep, viewer: Viewer, queue: QueueDep, view: BoardView = "all"
):
    phase = phase_or_none(session, slug)
    if phase is None:
        return not_found(request, viewer, f"There is no phase {slug!r}.")
    board = leaderboard(session=session, phase=phase, viewer=viewer, view=view)
    # what is being evaluated that this viewer may see: the baselines (public), and its own team's
    in_progress = [
        (sub, status_body(sub, queue))
        for sub in queue.pending
        if sub.phase_id == phase.id and submission_visible(sub, viewer)
    ]
    chart = charts.build(
        [
            {
                "id": row.submission_id,
                "label": f"{row.team} · {row.method}",
                "r": row.retained_fraction,
                "miou": row.mean_miou,
                "miou_std": row.mean_miou_std,
                "normdel": row.mean_normdel,
                "baseline": row.is_baseline,
            }  # fmt: skip
            for row in board.rows
        ]
    )
    return render(
        request, "board.html", viewer, phase=phase, board=board, chart=chart, labels=LABELS,
        phases=list(session.scalars(select(Phase).order_by(Phase.id))), now=utcnow(), in_progress=in_progress,
    )  # fmt: skip


@router.get("/phases/{slug}/leaderboard.csv")
def board_csv_page(slug: str, request: Request, session: SessionDep, viewer: Viewer, view: BoardView = "all"):
    """The page's download: the rows this viewer sees (a signed-in team's own rows of a hidden phase)."""
    phase = phase_or_none(session, slug)
    if phase is None:
        return not_found(request, viewer, f"There is no phase {slug!r}.")
    return csv_response(
        board_csv(leaderboard(session=session, phase=phase, viewer=viewer, view=view)), f"delbench-{slug}.csv"
    )


@router.get("/phases/{slug}/leaderboard.json")
def board_json_page(
    slug: str, request: Request, session: SessionDep, viewer: Viewer, view: BoardView = "all"
):
    phase = phase_or_none(session, slug)
    if phase is None:
        return not_found(request, viewer, f"There is no phase {slug!r}.")
    board = leaderboard(session=session, phase=phase, viewer=viewer, view=view)
    return Response(
        board.model_dump_json(indent=1),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="delbench-{slug}.json"'},
    )


def visible_submission(session, submission_id: int, viewer: Team | None) -> Submission | None:
    submission = session.get(Submission, submission_id)
    return submission if submission is not None and submission_visible(submission, viewer) else None


@router.get("/me", response_class=HTMLResponse)
def my_submissions(request: Request, session: SessionDep, viewer: Viewer, queue: QueueDep):
    """The signed-in team's own submissions, newest first, with status (place in the queue, stage and ETA
    while pending), scores and links."""
    if viewer is None:
        return RedirectResponse("/login?next=/me", status_code=303)
    subs = list_team_submissions(session=session, team=viewer, limit=500)
    summaries = {s.id: status_body(s, queue)["summary"] for s in subs if s.status in PENDING_STATUSES}
    return render(request, "mine.html", viewer, subs=subs, summaries=summaries)


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(
    submission_id: SubmissionId, request: Request, session: SessionDep, viewer: Viewer, queue: QueueDep
):
    sub = visible_submission(session, submission_id, viewer)
    if sub is None:  # the same answer whether it does not exist or is not this viewer's to see
        return not_found(request, viewer, f"No submission {submission_id} that you can see.")
    owner = viewer is not None and (viewer.is_admin or viewer.id == sub.team_id)
    results = scores(sub.results) if sub.status.value == "succeeded" else None
    random_row = random_baseline_near(session=session, submission=sub, viewer=viewer) if results else None
    runs = list(sub.runs)
    curves = {run.seed: run.results.get("loss_curve") or [] for run in runs}
    return render(
        request, "submission.html", viewer, sub=sub, owner=owner, results=results, runs=runs,
        loss=charts.loss_curve_path(curves), labels=LABELS, pending=sub.status in PENDING_STATUSES,
        status=status_body(sub, queue), random_row=random_row,
        random_scores=scores(random_row.results) if random_row else None,
    )  # fmt: skip


def status_body(sub: Submission, queue: QueueView) -> dict:
    standing = queue.standing(sub)
    body = {
        "id": sub.id,
        "status": sub.status.value,
        "current_stage": sub.current_stage,
        "progress": sub.progress,
        "eta_seconds": standing.eta_seconds,
        "queue_position": standing.position,
        "queue_ahead": standing.ahead,
        "starts_in_seconds": standing.starts_in_seconds,
        "stages": [
            {"name": s.name, "seed": s.seed, "status": s.status.value, "progress": s.progress}
            for s in sub.stages
        ],
    }
    return {**body, "summary": progress_line(body)}


@router.post("/submissions/{submission_id}/cancel")
def cancel_from_page(
    submission_id: SubmissionId,
    request: Request,
    session: SessionDep,
    viewer: Viewer,
    reason: Annotated[str, Form(max_length=2000)] = "",
):
    """The submission page's "Withdraw" button: the signed-in team cancels its own pending submission. The
    cookie is SameSite=Lax, and the form must come from this site (Origin), so no other site can post it."""
    sub = session.get(Submission, submission_id)
    if viewer is None or sub is None or sub.team_id != viewer.id:
        return not_found(request, viewer, f"No submission {submission_id} of yours to withdraw.")
    if request.headers.get("origin") != str(request.base_url).rstrip("/"):
        return render(request, "error.html", viewer, code=403, title="Refused",
                      message="A withdrawal must be sent from this site's own submission page.")  # fmt: skip
    try:
        moderation.withdraw(session=session, team=viewer, submission=sub, reason=reason)
    except ApiError as exc:
        return render(request, "error.html", viewer, code=exc.status, title="Not withdrawn", message=str(exc))
    return RedirectResponse(f"/submissions/{submission_id}", status_code=303)


@router.get("/submissions/{submission_id}/status.json")
def submission_status(submission_id: SubmissionId, session: SessionDep, viewer: Viewer, queue: QueueDep):
    """What the page polls while an evaluation runs: status, stage and progress (no scores)."""
    sub = visible_submission(session, submission_id, viewer)
    if sub is None:
        return JSONResponse(
            {"error": {"rule": "submission_not_found", "message": f"no submission {submission_id}", "line": None,
                       "id": None}},
            status_code=404,
        )  # fmt: skip
    return JSONResponse(status_body(sub, queue), headers={"Cache-Control": "no-store"})


@router.get("/submissions/{submission_id}/selection.txt")
def selection_file(submission_id: SubmissionId, request: Request, session: SessionDep, viewer: Viewer):
    """The uploaded selection, where its team allowed it (and always to the team itself)."""
    sub = visible_submission(session, submission_id, viewer)
    owner = sub is not None and viewer is not None and (viewer.is_admin or viewer.id == sub.team_id)
    if sub is None or not (sub.allow_selection_download or owner):
        return not_found(request, viewer, f"No selection file to download for submission {submission_id}.")
    try:
        data = sub.selection_bytes()
    except OSError:  # an old submission whose file is gone
        return not_found(request, viewer, f"No selection file to download for submission {submission_id}.")
    return Response(data, media_type="text/plain", headers={
        "Content-Disposition": f'attachment; filename="delbench-submission-{sub.id}.txt"'})  # fmt: skip


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, viewer: Viewer, next: str = "/"):
    return render(request, "login.html", viewer, next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
):
    """Sign in with the team's API token: it is kept in an HttpOnly cookie that only pages read."""
    try:
        team = authenticate_limited(
            session=session,
            token=token.strip(),
            limits=request.app.state.rate_limits,
            client=client_address(request),
        )
    except ApiError as exc:
        return render(request, "login.html", None, code=401, next=_safe_next(next), error=str(exc))
    session.commit()  # last_used_at
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, token.strip(), httponly=True, samesite="lax", secure=request.url.scheme == "https",
        max_age=30 * 24 * 3600, path="/",
    )  # fmt: skip
    response.headers["X-DELBench-Team"] = team.name
    return response


@router.post("/logout")
def logout():
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _safe_next(target: str) -> str:
    """Only a path on this site (never `//evil.example`), so sign-in cannot redirect elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
