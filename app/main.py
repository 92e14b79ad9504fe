"""Builds the FastAPI app: `uvicorn app.main:create_app --factory` (or `delbench serve`)."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.main import api_router
from app.api.routes import health
from app.contract import create_celery
from app.db import DataVersion, make_engine, make_session_factory
from app.errors import error_body, install_error_handlers
from app.models import Phase
from app.services.phases import pool_at
from app.services.ratelimit import RateLimits
from app.settings import Settings, get_settings
from app.web.routes import router as pages_router

log = logging.getLogger("delbench.api")
STATIC_DIR = Path(__file__).resolve().parent / "static"
FORM_OVERHEAD = 1024 * 1024  # room for the multipart envelope and the text fields around the file


class BodyTooLarge(StarletteHTTPException):
    """Raised from inside the body stream; FastAPI passes an HTTPException through its body parsing, so the
    client gets the API's 413."""

    def __init__(self, message: str):
        super().__init__(status_code=413, detail=message)


class UploadLimit:
    """Refuses, before a byte of the body is read, a Content-Length over the upload limit and a POST to the
    API without credentials; a body without a Content-Length (chunked) is counted as it streams and cut off
    at the limit. (FastAPI's own `max_body_size` would do the counting, but it answers in plain text, not in
    the API's error shape.)"""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + FORM_OVERHEAD
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length and length.isdigit() and int(length) > limit:
            message = f"request body is {int(length):,} bytes; the selection file limit is {self.max_bytes:,}"
            await JSONResponse(error_body("too_large", message), status_code=413)(scope, receive, send)
            return
        if scope["method"] == "POST" and _needs_token(scope["path"]) and not _has_credentials(headers):
            body = error_body("token_missing", "send your team's token: Authorization: Bearer TOKEN")
            await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
            return
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(
                        f"request body is over {limit:,} bytes; the selection file limit is {self.max_bytes:,}"
                    )
            return message

        await self.app(scope, bounded_receive, send)


def _needs_token(path: str) -> bool:
    """Routes that only a team may POST to: its uploads and the admin API (the login form takes a token)."""
    return path.startswith("/api/v1/")


def _has_credentials(headers: dict) -> bool:
    return headers.get(b"authorization", b"").lower().startswith(b"bearer ") or b"cookie" in headers


def _warm_pools(factory) -> None:
    """Parse the phases' pool manifests in the background at start-up: the first upload to a 1M-frame pool
    would otherwise wait seconds for it."""
    try:
        with factory() as session:
            dirs = set(session.scalars(select(Phase.pool_dir)))
        for pool_dir in dirs:
            pool_at(pool_dir)
    except Exception:  # a missing pool fails its uploads with a clear error; start-up goes on
        log.warning("could not preload the pools", exc_info=True)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    threading.Thread(
        target=_warm_pools, args=(app.state.session_factory,), daemon=True, name="warm-pools"
    ).start()
    yield
    app.state.engine.dispose()
    app.state.db_version.close()


def _add_offline_docs(app: FastAPI) -> None:
    """The OpenAPI page at /docs with Swagger UI's files served by this server (the swagger-ui-bundle
    package), so that it works where the server cannot reach the internet and leaks no visit to a CDN."""
    app.mount("/swagger-ui", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title}: API",
            swagger_js_url="/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/swagger-ui/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        lifespan=_lifespan,
        title="DELBench",
        description="Evaluation server for medical data-effective learning: submit a pretraining subset, get "
        "its downstream mIoU and NormDEL on the leaderboard.",
        version="1",
        docs_url=None,  # served below from local files: FastAPI's default page loads its assets from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.db_version = DataVersion(settings.database_url)  # the public leaderboard's freshness check
    app.state.celery = create_celery(settings)
    app.state.rate_limits = RateLimits(settings)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(api_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_offline_docs(app)
    app.add_middleware(UploadLimit, max_bytes=settings.upload_max_bytes)
    return app
