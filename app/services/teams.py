"""Teams and API tokens. A token is `dlb_` + 43 random URL-safe characters; only its sha256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import ApiToken, Team, utcnow

TOKEN_PREFIX = "dlb_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_team(*, session: Session, name: str, is_admin: bool = False) -> Team:
    team = Team(name=name, is_admin=is_admin, disabled=False)
    session.add(team)
    session.flush()
    return team


def create_token(*, session: Session, team: Team, label: str = "") -> tuple[ApiToken, str]:
    """A new token for `team`: the row and the token itself, which is never stored and cannot be shown again."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(team_id=team.id, token_hash=hash_token(token), prefix=token[:12], label=label)
    session.add(row)
    session.flush()
    return row, token


def get_team(*, session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise ApiError(404, "team_not_found", f"no team {name!r}")
    return team


def rekey(*, session: Session, team: Team, revoke_existing: bool = True, label: str = "") -> str:
    """A new token for `team` (returned, never stored); by default every older token stops working."""
    if revoke_existing:
        now = utcnow()
        for row in team.tokens:
            if row.revoked_at is None:
                row.revoked_at = now
    return create_token(session=session, team=team, label=label)[1]


def authenticate(*, session: Session, token: str | None) -> Team:
    if not token:
        raise ApiError(401, "token_missing", "missing API token: send `Authorization: Bearer <token>`")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    # compare_digest keeps the (already hashed) comparison constant-time as well
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.token_hash, hash_token(token))
    ):
        raise ApiError(401, "token_invalid", "invalid or revoked API token")
    if row.team.disabled:
        raise ApiError(403, "team_disabled", f"team {row.team.name!r} is disabled")
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:  # not a write per request
        row.last_used_at = now
    return row.team


def authenticate_limited(*, session: Session, token: str | None, limits, client: str) -> Team:
    """`authenticate`, with failed attempts (an unknown or revoked token) counted per client address and
    refused with 429 once that address has spent its window (`RateLimits`), so tokens cannot be guessed."""
    limits.failed_auth_guard(client)
    try:
        return authenticate(session=session, token=token)
    except ApiError as exc:
        if exc.rule == "token_invalid":
            limits.failed_auth_seen(client)
        raise
