"""A database that cannot be reached is a 503 with Retry-After, never a 500, and /healthz says so."""

from __future__ import annotations

import socket
import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


def _closed_port() -> int:
    """A loopback port with nothing listening: connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def client(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test?connect_timeout=2"
    settings = Settings(database_url=url, data_dir=str(tmp_path), broker_url="memory://")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_unreachable_database_answers_503_with_retry_after(client):
    health = client.get("/healthz")
    assert health.status_code == 503 and health.headers["retry-after"].isdigit()
    assert health.json()["status"] == "unavailable" and health.json()["database"].startswith("down: ")
    for path in ("/api/v1/phases", "/api/v1/submissions"):
        r = client.get(path, headers={"Authorization": "Bearer dlb_nothing"})
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.headers["retry-after"].isdigit() and r.json()["error"]["rule"] == "database_unavailable"
        assert "Traceback" not in r.text


def test_a_session_whose_database_went_away_closes_without_raising(tmp_path):
    """Closing a request's session rolls back its open transaction after the answer was sent; if the
    database dropped the connection meanwhile, that must not raise (the server would then close the
    client's kept-alive connection), and the next request gets a fresh connection."""
    from sqlalchemy import text
    from starlette.requests import Request

    from app.api.deps import get_session
    from tests.server.conftest import PG_ADMIN_URLS, need_postgres

    need_postgres()
    settings = Settings(database_url=PG_ADMIN_URLS[0], data_dir=str(tmp_path), broker_url="memory://")
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 10  # the start-up's pool preloading holds a connection for a moment
        while app.state.engine.pool.checkedout() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.engine.pool.checkedout() == 0
        dependency = get_session(Request({"type": "http", "app": app, "method": "GET", "headers": []}))
        session = next(dependency)
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()  # a transaction is now open
        with app.state.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        dependency.close()  # FastAPI's teardown: runs the dependency's `finally`
        assert app.state.engine.pool.checkedout() == 0  # the broken connection went back
        assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
