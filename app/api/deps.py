"""What routes declare they need: a database session, the calling team, an organizer."""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db import read_only_bind
from app.errors import ApiError, database_unreachable
from app.models import Team
from app.services.queue import QueueView
from app.services.teams import authenticate_limited
from app.settings import Settings

log = logging.getLogger("delbench.api")

_bearer = HTTPBearer(auto_error=False, description="A team's API token")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def open_session(app: FastAPI, *, read_only: bool) -> Session:
    """A read-only session takes no lock on SQLite and flushes nothing (a token's last-used time included)."""
    if read_only:
        return app.state.session_factory(bind=read_only_bind(app.state.engine), autoflush=False)
    return app.state.session_factory()


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; routes that write commit it themselves (then enqueue). GET and HEAD requests
    only read."""
    session = open_session(request.app, read_only=request.method in ("GET", "HEAD"))
    try:
        yield session
    finally:
        close_session(session)


def close_session(session: Session) -> None:
    """Close without raising when the database went away since the request's last statement. Closing rolls
    back what the request left open, and it runs after the answer was sent: an error there would reach the
    server, which then drops the client's kept-alive connection (its next request fails unanswered). The
    pool discards the broken connection either way."""
    try:
        session.close()
    except DBAPIError as exc:
        if not database_unreachable(exc):
            raise
        log.warning("database went away before the session closed: %s", str(exc).splitlines()[0])
        with contextlib.suppress(DBAPIError):
            session.invalidate()


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_queue(session: SessionDep, settings: SettingsDep) -> QueueView:
    return QueueView(session, worker_alive_seconds=settings.worker_alive_seconds)


QueueDep = Annotated[QueueView, Depends(get_queue)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _authenticate(request: Request, session: Session, token: str | None) -> Team:
    return authenticate_limited(
        session=session, token=token, limits=request.app.state.rate_limits, client=client_address(request)
    )


def current_team(request: Request, session: SessionDep, credentials: Credentials) -> Team:
    return _authenticate(request, session, credentials.credentials if credentials else None)


def optional_team(request: Request, session: SessionDep, credentials: Credentials) -> Team | None:
    return current_team(request, session, credentials) if credentials else None


CurrentTeam = Annotated[Team, Depends(current_team)]
OptionalTeam = Annotated[Team | None, Depends(optional_team)]


def require_admin(
    request: Request, session: SessionDep, settings: SettingsDep, credentials: Credentials
) -> Team | None:
    """An admin team's token, or the settings' admin token (returns None then: no team acts)."""
    token = credentials.credentials if credentials else None
    configured = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token and configured and hmac.compare_digest(token.encode(), configured.encode()):
        return None
    team = _authenticate(request, session, token)
    if not team.is_admin:
        raise ApiError(403, "admin_only", "this route is for organizers (admin tokens only)")
    return team


AdminDep = Annotated[Team | None, Depends(require_admin)]


# A submission ID in a URL: a positive 32-bit integer, as the database stores it (larger is a 422, not a 500).
SubmissionId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
