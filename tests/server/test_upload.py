"""Uploading over HTTP: the accepted path and every refusal. A refusal must name its rule (and the line or
ID where there is one) and leave no trace: no submission row, no stored file, no broker message."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from app.contract import queue_size
from app.main import create_app
from app.models import Submission, SubmissionStatus, WorkerHeartbeat, utcnow
from app.services.phases import get_phase
from app.services.pipeline import fail_submission
from app.services.submissions import SubmissionMeta, create_submission
from app.services.teams import create_team, create_token
from tests.server.conftest import add_team, seed_phase


@pytest.fixture
def client(stack):
    with TestClient(create_app(stack.settings)) as c:
        yield c


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def upload(client, token, body: bytes | str, phase="dev", **form):
    data = body.encode() if isinstance(body, str) else body
    return client.post(
        f"/api/v1/phases/{phase}/submissions",
        headers=auth(token) if token else {},
        files={"file": ("selection.txt", data, "text/plain")},
        data=form,
    )


def traces(stack) -> tuple[int, int, int]:
    """(submission rows, broker messages, stored selection files)."""
    with stack.session() as session:
        rows = session.scalar(select(func.count()).select_from(Submission))
        files = session.scalar(select(func.count()).where(Submission.selection_data.is_not(None)))
    return rows, stack.broker_messages(), files


def test_upload_accepted_is_stored_and_queued(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    before = traces(stack)
    r = upload(
        client,
        seeded.token,
        "\n".join(pool_ids[:48]) + "\n",
        method="random 10%",
        code_url="https://example.org/x",
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["n"] == 48 and body["retained_fraction"] == pytest.approx(0.1)
    assert traces(stack) == (before[0] + 1, before[1] + 1, before[2] + 1)  # one row, one message, one file
    celery = client.app.state.celery
    assert (queue_size(celery, "light"), queue_size(celery, "gpu")) == (1, 0)  # validation comes first
    status = client.get(body["status_url"], headers=auth(seeded.token))
    assert status.status_code == 200
    sub = status.json()
    assert sub["status"] == "queued" and sub["method"] == "random 10%" and sub["results"] is None
    assert [s["name"] for s in sub["stages"]][:2] == ["validate", "pretrain"] and len(sub["stages"]) == 11
    listed = client.get("/api/v1/submissions", headers=auth(seeded.token)).json()
    assert [s["id"] for s in listed] == [body["id"]]
    # another team cannot read it, and learns nothing from the ID
    other = add_team(stack, "team-b")
    assert client.get(body["status_url"], headers=auth(other)).status_code == 404
    assert client.get("/api/v1/submissions", headers=auth(other)).json() == []


BAD_SELECTIONS = [
    # (name, body, status, rule, line, id)
    ("unknown_id", lambda ids: f"{ids[0]}\n{ids[1]}\nnot/a/real/id\n", 422, "unknown_id", 3, "not/a/real/id"),
    ("duplicate_id", lambda ids: f"{ids[0]}\n{ids[1]}\n{ids[0]}\n", 422, "duplicate_id", 3, "{0}"),
    ("empty", lambda ids: "\n\n  \n", 422, "empty", None, None),
    ("undecodable", lambda ids: f"{ids[0]}\n".encode() + b"\xff\xfe\xfa\n", 422, "encoding", 2, None),
    ("bad_json", lambda ids: '["' + ids[0] + '", 7]', 422, "format", 2, None),
    ("csv_unknown", lambda ids: f"id,score\n{ids[0]},1\nnope,2\n", 422, "unknown_id", 3, "nope"),
]


@pytest.mark.parametrize("case", BAD_SELECTIONS, ids=[c[0] for c in BAD_SELECTIONS])
def test_bad_selection_is_refused_without_trace(stack, client, pool_dir, pool_ids, case):
    _, make, status, rule, line, sample_id = case
    seeded = seed_phase(stack, pool_dir)
    before = traces(stack)
    r = upload(client, seeded.token, make(pool_ids))
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["rule"] == rule
    assert error["line"] == line
    assert error["id"] == (sample_id.format(pool_ids[0]) if sample_id else None)
    if line:  # the message names the place too (JSON selections count items, not lines)
        assert re.search(rf"\b(line|item) {line}\b", error["message"]), error["message"]
    assert traces(stack) == before


def test_size_limit(stack, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    stack.settings.upload_max_bytes = 1000
    with TestClient(create_app(stack.settings)) as client:
        before = traces(stack)
        body = "\n".join(pool_ids[:60])  # ~1,800 bytes: over the limit, under the envelope allowance
        r = upload(client, seeded.token, body)
        assert r.status_code == 413 and r.json()["error"]["rule"] == "too_large"
        assert "limit is 1,000" in r.json()["error"]["message"]
        huge = b"x" * (2 * 1024 * 1024)  # refused from its Content-Length, before parsing
        r = upload(client, seeded.token, huge)
        assert r.status_code == 413 and r.json()["error"]["rule"] == "too_large"
        assert traces(stack) == before


@pytest.mark.parametrize(
    "window, rule",
    [((-2, -1), "phase_closed"), ((1, 2), "phase_closed")],
    ids=["closed", "not_yet_open"],
)
def test_phase_outside_its_dates(stack, client, pool_dir, pool_ids, window, rule):
    now = utcnow()
    seeded = seed_phase(
        stack, pool_dir, opens_at=now + timedelta(days=window[0]), closes_at=now + timedelta(days=window[1])
    )
    before = traces(stack)
    r = upload(client, seeded.token, pool_ids[0])
    assert r.status_code == 403 and r.json()["error"]["rule"] == rule
    assert traces(stack) == before


def test_auth_failures(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    before = traces(stack)
    cases = [(None, 401, "token_missing"), ("dlb_wrong", 401, "token_invalid")]
    with stack.session() as session:
        from app.models import ApiToken, Team

        revoked = session.scalar(select(ApiToken).where(ApiToken.team_id == seeded.team_id))
        _, fresh = create_token(session=session, team=session.get(Team, seeded.team_id))
        revoked.revoked_at = utcnow()
    cases.append((seeded.token, 401, "token_invalid"))
    disabled = add_team(stack, "team-disabled")
    with stack.session() as session:
        from app.models import Team

        session.scalar(select(Team).where(Team.name == "team-disabled")).disabled = True
    cases.append((disabled, 403, "team_disabled"))
    for token, status, rule in cases:
        r = upload(client, token, pool_ids[0])
        assert (r.status_code, r.json()["error"]["rule"]) == (status, rule), token
        assert "Traceback" not in r.text
    assert upload(client, fresh, pool_ids[0]).status_code == 202  # the team's other token still works
    assert traces(stack)[0] == before[0] + 1


def test_request_errors(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    before = traces(stack)
    r = upload(client, seeded.token, pool_ids[0], phase="nope")
    assert r.status_code == 404 and r.json()["error"]["rule"] == "phase_not_found"
    r = client.post("/api/v1/phases/dev/submissions", headers=auth(seeded.token), data={"method": "x"})
    assert (
        r.status_code == 422
        and r.json()["error"]["rule"] == "request"
        and "file" in r.json()["error"]["message"]
    )
    r = upload(client, seeded.token, pool_ids[0], code_url="javascript:alert(1)")
    assert r.status_code == 422 and r.json()["error"]["rule"] == "field"
    assert (
        client.get("/api/v1/submissions/999", headers=auth(seeded.token)).json()["error"]["rule"]
        == "submission_not_found"
    )
    assert traces(stack) == before


def test_quota_total_and_day(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, quota_total=3, quota_per_day=2)
    assert upload(client, seeded.token, pool_ids[0]).status_code == 202
    assert upload(client, seeded.token, pool_ids[1]).status_code == 202
    before = traces(stack)
    r = upload(client, seeded.token, pool_ids[2])
    assert r.status_code == 429 and r.json()["error"]["rule"] == "quota_day"
    assert traces(stack) == before
    # yesterday's submissions count against the total, not against today
    with stack.session() as session:
        for sub in session.scalars(select(Submission)):
            sub.created_at = utcnow() - timedelta(days=1)
    assert upload(client, seeded.token, pool_ids[2]).status_code == 202
    before = traces(stack)
    r = upload(client, seeded.token, pool_ids[3])
    assert r.status_code == 429 and r.json()["error"]["rule"] == "quota_total"
    assert traces(stack) == before


def test_failed_and_cancelled_do_not_count(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, quota_total=1)
    first = upload(client, seeded.token, pool_ids[0]).json()["id"]
    assert upload(client, seeded.token, pool_ids[1]).status_code == 429
    with stack.session() as session:
        sub = session.get(Submission, first)
        fail_submission(session=session, stage=sub.stages[0], error="boom", log_tail=None)
    second = upload(client, seeded.token, pool_ids[1])
    assert second.status_code == 202
    with stack.session() as session:
        session.get(Submission, second.json()["id"]).status = SubmissionStatus.cancelled
    assert upload(client, seeded.token, pool_ids[2]).status_code == 202
    assert upload(client, seeded.token, pool_ids[3]).status_code == 429


def test_concurrent_uploads_at_the_quota_edge(stack, pool_dir, pool_ids):
    """Eight uploads at once against a quota of 3: exactly 3 are stored, whatever the interleaving."""
    seeded = seed_phase(stack, pool_dir, quota_total=3)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def one(i: int) -> None:
        with stack.factory() as session:
            from app.models import Team

            team = session.get(Team, seeded.team_id)
            phase = get_phase(session=session, slug="dev")
            session.commit()  # as the route does: no transaction (no SQLite write lock) held while waiting
            barrier.wait()
            try:
                create_submission(
                    session=session,
                    team=team,
                    phase=phase,
                    data=pool_ids[i].encode(),
                    meta=SubmissionMeta(),
                    max_bytes=10_000,
                )
                session.commit()
                outcomes.append("ok")
            except Exception as exc:
                session.rollback()
                outcomes.append(getattr(exc, "rule", repr(exc)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["ok"] * 3 + ["quota_total"] * 5
    assert traces(stack)[0] == 3 and traces(stack)[2] == 3


def test_leaderboard_and_phase_reads(stack, client, pool_dir):
    seed_phase(stack, pool_dir)
    phases = client.get("/api/v1/phases").json()
    assert phases[0]["slug"] == "dev" and phases[0]["pool_size"] == 480 and phases[0]["is_open"]
    board = client.get("/api/v1/phases/dev/leaderboard")
    assert board.status_code == 200 and board.json()["rows"] == [] and len(board.json()["datasets"]) == 8
    assert client.get("/api/v1/phases/nope/leaderboard").json()["error"]["rule"] == "phase_not_found"
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


def test_api_docs_page_needs_no_other_host(client):
    """/docs links only this server's own files (Swagger UI is served locally, not from a CDN), and each loads."""
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert any(link.endswith("swagger-ui-bundle.js") for link in links), links
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    for link in links:
        asset = client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 100, link
    assert "cdn" not in page.text.lower()


def test_json_and_csv_selections_are_accepted(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    r1 = upload(client, seeded.token, json.dumps(pool_ids[:5]))
    r2 = upload(client, seeded.token, "id,note\n" + "\n".join(f"{i},x" for i in reversed(pool_ids[:5])))
    assert r1.status_code == r2.status_code == 202
    assert r1.json()["selection_hash"] == r2.json()["selection_hash"]  # same set, any format, same hash


def test_admin_health_needs_an_admin_token(stack, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    stack.settings.admin_token = SecretStr("s" * 40)
    with stack.session() as session:
        _, admin_token = create_token(
            session=session, team=create_team(session=session, name="orgs", is_admin=True)
        )
        session.add(WorkerHeartbeat(name="gpu0@x", queues="gpu,light", pid=7))
    with TestClient(create_app(stack.settings)) as client:
        assert upload(client, seeded.token, pool_ids[0]).status_code == 202
        url = "/api/v1/admin/health"
        assert client.get(url).json()["error"]["rule"] == "token_missing"
        assert client.get(url, headers=auth(seeded.token)).status_code == 403  # a participant
        for token in (admin_token, "s" * 40):  # an admin team's token, and the settings' admin token
            health = client.get(url, headers=auth(token))
            assert health.status_code == 200, health.text
            body = health.json()
            assert body["submissions"] == {"queued": 1} and body["queues"] == {"gpu": 0, "light": 1}
            assert [w["name"] for w in body["workers"]] == ["gpu0@x"]


def test_a_retried_upload_with_its_idempotency_key_is_one_submission(stack, client, pool_dir, pool_ids):
    """The answer to an accepted upload was lost and the client sends it again with the same key: it gets
    the first answer back, and the quota counts one submission."""
    seeded = seed_phase(stack, pool_dir, quota_total=2)
    body = {"file": ("selection.txt", "\n".join(pool_ids[:40]).encode(), "text/plain")}
    url = "/api/v1/phases/dev/submissions"
    headers = {**auth(seeded.token), "Idempotency-Key": "retry-me-0001"}
    first = client.post(url, headers=headers, files=body)
    again = client.post(url, headers=headers, files=body)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert traces(stack)[0] == 1 and traces(stack)[2] == 1  # one row, one stored file
    other_file = {"file": ("selection.txt", "\n".join(pool_ids[:30]).encode(), "text/plain")}
    refused = client.post(url, headers=headers, files=other_file)
    assert refused.status_code == 422 and refused.json()["error"]["rule"] == "idempotency_key_reused"
    # a new key is a new upload, and the quota still has room for it
    second = client.post(url, headers={**auth(seeded.token), "Idempotency-Key": "new-0002"}, files=other_file)
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"]
    # keys are the team's own: another team's identical key and file is its own submission
    other_token = add_team(stack, "team-b")
    theirs = client.post(url, headers={**auth(other_token), "Idempotency-Key": "retry-me-0001"}, files=body)
    assert theirs.status_code == 202 and theirs.json()["id"] not in (first.json()["id"], second.json()["id"])


def test_concurrent_retries_with_one_idempotency_key_make_one_submission(stack, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    body = "\n".join(pool_ids[:40]).encode()
    answers: list[tuple[int, int]] = []
    with TestClient(create_app(stack.settings)) as client:
        barrier = threading.Barrier(4)

        def one() -> None:
            barrier.wait()
            r = client.post(
                "/api/v1/phases/dev/submissions",
                headers={**auth(seeded.token), "Idempotency-Key": "same-key"},
                files={"file": ("s.txt", body, "text/plain")},
            )
            answers.append((r.status_code, r.json().get("id")))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(answers) == 4 and {code for code, _ in answers} == {202} and len({i for _, i in answers}) == 1
    assert traces(stack)[0] == 1 and traces(stack)[2] == 1


@pytest.mark.parametrize("policy", ["allow", "warn", "refuse"])
def test_a_second_upload_of_the_same_selection_follows_the_phases_policy(
    stack, client, pool_dir, pool_ids, policy
):
    from app.models import DuplicatePolicy

    seeded = seed_phase(stack, pool_dir, duplicates=DuplicatePolicy(policy))
    same = "\n".join(pool_ids[:40])
    first = upload(client, seeded.token, same)
    assert (
        first.status_code == 202 and first.json()["duplicate_of"] is None and first.json()["warnings"] == []
    )
    again = upload(client, seeded.token, "\n".join(reversed(pool_ids[:40])))  # same set, other order
    if policy == "refuse":
        assert again.status_code == 409 and again.json()["error"]["rule"] == "duplicate_selection"
        assert str(first.json()["id"]) in again.json()["error"]["message"]
        assert traces(stack)[0] == 1  # nothing stored
    else:
        assert again.status_code == 202
        warned = again.json()
        if policy == "warn":
            assert warned["duplicate_of"] == first.json()["id"] and "same selection" in warned["warnings"][0]
        else:
            assert warned["duplicate_of"] is None and warned["warnings"] == []
    other = upload(client, seeded.token, "\n".join(pool_ids[:41]))  # another selection is never a duplicate
    assert other.status_code == 202 and other.json()["duplicate_of"] is None


def test_a_team_withdraws_its_own_pending_submission_and_only_its_own(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, quota_total=1)
    sid = upload(client, seeded.token, "\n".join(pool_ids[:40])).json()["id"]
    other = add_team(stack, "team-b")
    url = f"/api/v1/submissions/{sid}/cancel"
    assert client.post(url, headers=auth(other), json={"reason": "not mine"}).status_code == 404
    r = client.post(url, headers=auth(seeded.token), json={"reason": "wrong file"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and "wrong file" in r.json()["error"]
    again = client.post(url, headers=auth(seeded.token), json={})
    assert again.status_code == 409 and again.json()["error"]["rule"] == "not_pending"
    # the quota slot came back: a quota of 1 takes a new upload
    assert upload(client, seeded.token, "\n".join(pool_ids[:30])).status_code == 202


def test_a_submission_stored_before_the_database_held_files_is_read_from_its_file(tmp_path):
    """Rows from before migration 0004 have `file_path` and no `selection_data`: they stay readable."""
    old = tmp_path / "ab" / "abcdef-1"
    old.parent.mkdir()
    old.write_bytes(b"frame-1\nframe-2\n")
    assert Submission(file_path=str(old)).selection_bytes() == b"frame-1\nframe-2\n"
    assert Submission(selection_data=b"frame-3\n", file_path=None).selection_bytes() == b"frame-3\n"
