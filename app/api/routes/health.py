"""Liveness and readiness: which of the API's dependencies answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.api.deps import SessionDep
from app.errors import RETRY_AFTER_SECONDS

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"description": "a dependency is down; the body says which"}})
def healthz(session: SessionDep):
    try:
        session.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig or exc).splitlines()[0][:200]
        return JSONResponse(
            {"status": "unavailable", "database": f"down: {reason}"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return {"status": "ok", "database": "ok"}
