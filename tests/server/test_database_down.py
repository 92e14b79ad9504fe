"""A database that cannot be reached is a 503 with Retry-After, never a 500, and /healthz says so."""

from __future__ import annotations

import socket

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
