"""The API's one error shape: `{"error": {"rule", "message", "line", "id"}}`, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("delbench.api")

RETRY_AFTER_SECONDS = 5  # what a 503 tells a client to wait before it retries


def database_unreachable(exc: BaseException) -> bool:
    """A database that cannot be reached (refused, dropped, restarting), as opposed to a bad statement."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        rule: str,
        message: str,
        *,
        line: int | None = None,
        sample_id: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.rule = rule
        self.line = line
        self.sample_id = sample_id
        self.headers = headers

    def to_dict(self) -> dict:
        return {"rule": self.rule, "message": str(self), "line": self.line, "id": self.sample_id}


def error_body(rule: str, message: str, line: int | None = None, sample_id: str | None = None) -> dict:
    return {"error": {"rule": rule, "message": message, "line": line, "id": sample_id}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return JSONResponse(
            {"error": exc.to_dict()}, status_code=exc.status, headers=headers | (exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            error_body("request", f"{where or 'request'}: {first.get('msg', 'invalid request')}"), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        rule = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http")
        # Starlette's own headers (a 405's `Allow`, which RFC 9110 requires) pass through
        return JSONResponse(
            error_body(rule, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError):
        if not database_unreachable(exc):
            return await _unexpected(request, exc)
        log.warning(
            "database unreachable on %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0]
        )
        return JSONResponse(
            error_body("database_unavailable", "the database cannot be reached right now; retry shortly"),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal server error; it has been logged"), 500)
