"""Phases and their leaderboards (public; hidden phases show a team only its own rows)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select

from app.api.deps import Credentials, OptionalTeam, SessionDep, open_session
from app.models import Phase, utcnow
from app.schemas import ErrorBody, Leaderboard, PhaseOut
from app.services.leaderboard import (
    BoardView,
    board_csv,
    fresh_public_board,
    leaderboard,
    leaderboard_json,
    phase_pool_size,
    remember_public_board,
)
from app.services.phases import get_phase
from app.services.teams import authenticate

router = APIRouter(prefix="/phases", tags=["phases"])


def phase_out(phase: Phase) -> PhaseOut:
    return PhaseOut.model_validate(phase).model_copy(
        update={"pool_size": phase_pool_size(phase), "is_open": phase.is_open(utcnow())}
    )


@router.get("", response_model=list[PhaseOut])
def list_phases(session: SessionDep) -> list[PhaseOut]:
    return [phase_out(p) for p in session.scalars(select(Phase).order_by(Phase.id))]


@router.get("/{slug}", response_model=PhaseOut, responses={404: {"model": ErrorBody}})
def read_phase(slug: str, session: SessionDep) -> PhaseOut:
    return phase_out(get_phase(session=session, slug=slug))


@router.get("/{slug}/leaderboard", response_model=Leaderboard, responses={404: {"model": ErrorBody}})
async def read_leaderboard(
    slug: str, request: Request, credentials: Credentials, view: BoardView = "all"
) -> Response:
    """Ranked by mean NormDEL, with mean mIoU, R, n and the per-dataset mIoU and NormDEL. `view=best`: each
    team's best entry only (and every baseline), ranked anew."""
    # The public hot path (bench/api.py): while the database has not changed, the last public board is
    # served with no query at all; otherwise all the database work runs in one thread-pool hop (a sync route
    # with session and team dependencies makes four) and builds the board only if what it shows changed.
    changes = request.app.state.db_version
    public = credentials is None and view == "all"
    version, body = fresh_public_board(changes, slug) if public else (None, None)
    if body is None:
        body = await run_in_threadpool(_leaderboard_bytes, request.app, slug, credentials, view)
        if public:
            remember_public_board(changes, slug, version, body)
    return Response(content=body, media_type="application/json")


def _leaderboard_bytes(
    app: FastAPI, slug: str, credentials: HTTPAuthorizationCredentials | None, view: BoardView
) -> bytes:
    with open_session(app, read_only=True) as session:
        viewer = authenticate(session=session, token=credentials.credentials) if credentials else None
        phase = get_phase(session=session, slug=slug)
        return leaderboard_json(session=session, phase=phase, viewer=viewer, view=view)


@router.get(
    "/{slug}/leaderboard.csv",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/csv": {}}},
        # the error is JSON like every other (the route's own media type is CSV)
        404: {
            "description": "no such phase",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        },
    },
)
def read_leaderboard_csv(
    slug: str, session: SessionDep, viewer: OptionalTeam, view: BoardView = "all"
) -> PlainTextResponse:
    """The same board as CSV (the same rows a token's holder sees as JSON)."""
    board = leaderboard(
        session=session, phase=get_phase(session=session, slug=slug), viewer=viewer, view=view
    )
    return csv_response(board_csv(board), f"delbench-{slug}-leaderboard.csv")


def csv_response(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
