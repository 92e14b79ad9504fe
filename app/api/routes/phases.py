"""Phases and their leaderboards (public; hidden phases show a team only its own rows)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import select

from app.api.deps import OptionalTeam, SessionDep
from app.models import Phase, utcnow
from app.schemas import ErrorBody, Leaderboard, PhaseOut
from app.services.leaderboard import board_csv, leaderboard, leaderboard_json, phase_pool_size
from app.services.phases import get_phase

router = APIRouter(prefix="/phases", tags=["phases"])


def phase_out(phase: Phase) -> PhaseOut:
    return PhaseOut(
        slug=phase.slug,
        name=phase.name,
        benchmark=phase.benchmark.slug,
        description=phase.description,
        tier=phase.tier,
        seeds=phase.seeds,
        pool_size=phase_pool_size(phase),
        quota_per_day=phase.quota_per_day,
        quota_total=phase.quota_total,
        opens_at=phase.opens_at,
        closes_at=phase.closes_at,
        is_open=phase.is_open(utcnow()),
        results_visibility=phase.results_visibility.value,
        published=phase.published,
    )


@router.get("", response_model=list[PhaseOut])
def list_phases(session: SessionDep) -> list[PhaseOut]:
    return [phase_out(p) for p in session.scalars(select(Phase).order_by(Phase.id))]


@router.get("/{slug}", response_model=PhaseOut, responses={404: {"model": ErrorBody}})
def read_phase(slug: str, session: SessionDep) -> PhaseOut:
    return phase_out(get_phase(session=session, slug=slug))


@router.get("/{slug}/leaderboard", response_model=Leaderboard, responses={404: {"model": ErrorBody}})
def read_leaderboard(slug: str, session: SessionDep, viewer: OptionalTeam) -> Response:
    """Ranked by mean NormDEL, with mean mIoU, R, n and the per-dataset mIoU and NormDEL."""
    phase = get_phase(session=session, slug=slug)
    body = leaderboard_json(session=session, phase=phase, viewer=viewer)  # cached until the board changes
    return Response(content=body, media_type="application/json")


@router.get(
    "/{slug}/leaderboard.csv",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}}, 404: {"model": ErrorBody}},
)
def read_leaderboard_csv(slug: str, session: SessionDep, viewer: OptionalTeam) -> PlainTextResponse:
    """The same board as CSV (the same rows a token's holder sees as JSON)."""
    board = leaderboard(session=session, phase=get_phase(session=session, slug=slug), viewer=viewer)
    return csv_response(board_csv(board), f"delbench-{slug}-leaderboard.csv")


def csv_response(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
