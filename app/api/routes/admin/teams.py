"""Teams: create (the token is shown once), disable or enable, re-key."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.admin_schemas import Changed, Rekey, TeamCreate, TeamEdit, TeamOut, TokenInfo, TokenOut
from app.api.deps import AdminDep, SessionDep
from app.errors import ApiError
from app.models import Submission, Team
from app.services import audit
from app.services.teams import create_team, create_token, get_team, rekey

router = APIRouter(prefix="/teams")


@router.get("", response_model=list[TeamOut])
def list_teams(session: SessionDep) -> list[TeamOut]:
    counts = dict(
        session.execute(select(Submission.team_id, func.count()).group_by(Submission.team_id)).all()
    )
    return [
        TeamOut(
            name=t.name,
            is_admin=t.is_admin,
            disabled=t.disabled,
            created_at=t.created_at,
            submissions=counts.get(t.id, 0),
            tokens=[
                TokenInfo(
                    prefix=k.prefix,
                    label=k.label,
                    created_at=k.created_at,
                    revoked_at=k.revoked_at,
                    last_used_at=k.last_used_at,
                )
                for k in t.tokens
            ],
        )  # fmt: skip
        for t in session.scalars(select(Team).order_by(Team.id))
    ]


@router.post("", status_code=201, response_model=TokenOut)
def add_team(body: TeamCreate, session: SessionDep, admin: AdminDep) -> TokenOut:
    """Create a team and its first API token: the answer is the only time the token is shown."""
    if session.scalar(select(Team.id).where(Team.name == body.name)) is not None:
        raise ApiError(409, "exists", f"team {body.name!r} already exists")
    team = create_team(session=session, name=body.name, is_admin=body.is_admin)
    _, token = create_token(session=session, team=team, label="created by the admin API")
    entry = audit.record(
        session=session, actor=admin, action="create_team", target=f"team:{team.name}", reason=body.reason,
        detail={"admin": body.is_admin},
    )  # fmt: skip
    try:
        session.commit()
    except IntegrityError:  # a concurrent create of the same name
        session.rollback()
        raise ApiError(409, "exists", f"team {body.name!r} already exists") from None
    return TokenOut(team=team.name, token=token, audit_id=entry.id)


@router.patch("/{name}", response_model=Changed)
def edit_team(name: str, body: TeamEdit, session: SessionDep, admin: AdminDep) -> Changed:
    """Disable a team (its tokens stop working at once, its rows stay on the board) or enable it again."""
    team = get_team(session=session, name=name)
    diff = {"disabled": [team.disabled, body.disabled]} if team.disabled != body.disabled else {}
    team.disabled = body.disabled
    return audit.commit_change(
        session=session, actor=admin, action="disable_team" if body.disabled else "enable_team",
        target=f"team:{name}", reason=body.reason, changes=diff,
    )  # fmt: skip


@router.post("/{name}/rekey", response_model=TokenOut)
def rekey_team(name: str, body: Rekey, session: SessionDep, admin: AdminDep) -> TokenOut:
    """A new token for the team, shown once; by default its older tokens are revoked (a leaked token)."""
    team = get_team(session=session, name=name)
    token = rekey(session=session, team=team, revoke_existing=body.revoke_existing, label="re-keyed")
    entry = audit.record(
        session=session, actor=admin, action="rekey_team", target=f"team:{name}", reason=body.reason,
        detail={"revoke_existing": body.revoke_existing, "prefix": token[:12]},
    )  # fmt: skip
    session.commit()
    return TokenOut(team=name, token=token, audit_id=entry.id)
