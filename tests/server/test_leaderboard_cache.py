"""The leaderboard's hot path: the JSON route serves a cached board until something on it changes, and reads
(GET) never wait for SQLite's write lock."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.main import create_app
from app.models import Submission
from app.services import leaderboard as board_service
from app.services.phases import get_phase
from tests.server.conftest import seed_phase
from tests.server.test_leaderboard import evaluated

BOARD = "/api/v1/phases/dev/leaderboard"


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """Counts the boards built from the database (a cache miss builds one)."""
    calls: list[int] = []
    build = board_service.leaderboard

    def counting(**kwargs):
        calls.append(1)
        return build(**kwargs)

    monkeypatch.setattr(board_service, "leaderboard", counting)
    return calls


def ids_on(client: TestClient) -> list[int]:
    return [r["submission_id"] for r in client.get(BOARD).json()["rows"]]


def test_cached_board_is_the_built_board_and_follows_every_change(stack, pool_dir, pool_ids, builds):
    seeded = seed_phase(stack, pool_dir)
    a = evaluated(stack, seeded.team_id, pool_ids[:48], "a", {0: 0.6})
    with TestClient(create_app(stack.settings)) as client:
        first = client.get(BOARD)
        assert first.status_code == 200 and first.headers["content-type"] == "application/json"
        with (
            stack.session() as session
        ):  # what the route served is the board, as the response model renders it
            built = board_service.leaderboard(
                session=session, phase=get_phase(session=session, slug="dev"), viewer=None
            )
        assert first.json() == built.model_dump(mode="json")
        assert client.get(BOARD).content == first.content
        assert len(builds) == 2  # the route's one build, and this test's own: the repeat was a cache hit

        b = evaluated(stack, seeded.team_id, pool_ids[:96], "b", {0: 0.7})  # a new result
        assert ids_on(client) == [b, a]
        with stack.session() as session:  # moderation
            session.get(Submission, b).hidden = True
        assert ids_on(client) == [a]
        with stack.session() as session:
            session.get(Submission, b).hidden = False
            session.get(Submission, a).disqualified = True
        assert ids_on(client) == [b]
        with stack.session() as session:  # the phase's visibility
            get_phase(session=session, slug="dev").results_visibility = "hidden"
        assert ids_on(client) == []
        assert len(builds) == 2 + 4


def test_reads_do_not_wait_for_the_write_lock(stack, pool_dir, pool_ids):
    if stack.name != "embedded":
        pytest.skip("SQLite's locking")
    seeded = seed_phase(stack, pool_dir)
    evaluated(stack, seeded.team_id, pool_ids[:48], "a", {0: 0.6})
    holding, release = threading.Event(), threading.Event()

    def writer():  # a long write transaction, as an upload or a worker's progress write holds one
        with stack.engine.connect() as conn:
            conn.execute(text("UPDATE phases SET description = 'busy'"))  # BEGIN IMMEDIATE: the write lock
            holding.set()
            release.wait(60)
            conn.rollback()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(10)
        with TestClient(create_app(stack.settings)) as client:
            t0 = time.monotonic()
            response = client.get(BOARD)
            waited = time.monotonic() - t0
            assert response.status_code == 200 and len(response.json()["rows"]) == 1
            assert client.get("/api/v1/phases/dev").status_code == 200
        assert waited < 5  # with the write lock taken by reads too, this waited for the writer (up to 30 s)
    finally:
        release.set()
        thread.join()


def test_unchanged_public_board_is_served_without_a_query(stack, pool_dir, pool_ids):
    if stack.name != "embedded":
        pytest.skip("the freshness check without a query is SQLite's data_version")
    from sqlalchemy import event

    seeded = seed_phase(stack, pool_dir)
    evaluated(stack, seeded.team_id, pool_ids[:48], "a", {0: 0.6})
    app = create_app(stack.settings)
    statements: list[str] = []
    event.listen(app.state.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with TestClient(app) as client:
        first = client.get(BOARD).content
        assert statements  # the first request looked the board up
        statements.clear()
        assert client.get(BOARD).content == first and statements == []
        headers = {"Authorization": f"Bearer {seeded.token}"}  # a token holder's board is looked up each time
        assert client.get(BOARD, headers=headers).status_code == 200 and statements
        statements.clear()
        b = evaluated(stack, seeded.team_id, pool_ids[:96], "b", {0: 0.7})  # another connection commits
        assert ids_on(client)[0] == b and statements
