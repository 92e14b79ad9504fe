"""The admin API: every organizer action works, is audited with who and why, and takes effect."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import AuditLog, Submission, WorkerHeartbeat, utcnow
from tests.board.conftest import add_admin, add_team, auth, finish, submit
from tests.server.conftest import MICRO_TIER, seed_phase


def test_a_phase_that_closed_already_is_created_with_a_warning(stack, client, pool_dir):
    h = auth(add_admin(stack))
    body = {
        "benchmark": "delbench", "slug": "old", "pool_dir": str(pool_dir), "tier": str(MICRO_TIER),
        "closes_at": "2020-01-01T00:00:00Z", "reason": "archive",
    }  # fmt: skip
    r = client.post("/api/v1/admin/phases", json=body, headers=h)
    assert (
        r.status_code == 201 and len(r.json()["warnings"]) == 1 and "in the past" in r.json()["warnings"][0]
    )


def test_phases_teams_and_audit(stack, client, pool_dir):
    admin = add_admin(stack)
    h = auth(admin)
    body = {
        "benchmark": "delbench", "slug": "val", "name": "Validation", "pool_dir": str(pool_dir),
        "tier": str(MICRO_TIER), "quota_per_day": 2, "results_visibility": "hidden", "reason": "season opens",
    }  # fmt: skip
    r = client.post("/api/v1/admin/phases", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["results_visibility"] == "hidden" and r.json()["seeds"] == 1
    assert r.json()["warnings"] == []
    assert client.post("/api/v1/admin/phases", json=body, headers=h).json()["error"]["rule"] == "exists"

    bad = client.post("/api/v1/admin/phases", json=body | {"slug": "x", "tier": "no-such-tier"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["rule"] == "phase_config"
    assert "no-such-tier" in bad.json()["error"]["message"]
    no_reason = client.patch("/api/v1/admin/phases/val", json={"seeds": 3}, headers=h)
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]["message"]
    blank = client.post("/api/v1/admin/phases/val/publish", json={"reason": "  "}, headers=h)
    assert blank.status_code == 422

    r = client.patch(
        "/api/v1/admin/phases/val",
        json={
            "seeds": 3,
            "quota_per_day": None,
            "closes_at": "2030-01-01T00:00:00+00:00",
            "reason": "3 seeds",
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["changes"]["seeds"] == [1, 3] and r.json()["changes"]["quota_per_day"] == [2, None]
    phase = client.get("/api/v1/phases/val").json()
    assert (phase["seeds"], phase["quota_per_day"], phase["published"]) == (3, None, False)
    assert client.post(
        "/api/v1/admin/phases/val/publish", json={"reason": "season over"}, headers=h
    ).is_success
    assert client.get("/api/v1/phases/val").json()["published"] is True

    r = client.post("/api/v1/admin/teams", json={"name": "team-z", "reason": "registered"}, headers=h)
    assert r.status_code == 201
    first = r.json()["token"]
    assert client.get("/api/v1/submissions", headers=auth(first)).status_code == 200
    assert client.patch(
        "/api/v1/admin/teams/team-z", json={"disabled": True, "reason": "abuse"}, headers=h
    ).is_success
    refused = client.get("/api/v1/submissions", headers=auth(first))
    assert refused.status_code == 403 and refused.json()["error"]["rule"] == "team_disabled"
    assert client.patch(
        "/api/v1/admin/teams/team-z", json={"disabled": False, "reason": "ok"}, headers=h
    ).is_success
    second = client.post("/api/v1/admin/teams/team-z/rekey", json={"reason": "leaked"}, headers=h).json()[
        "token"
    ]
    assert client.get("/api/v1/submissions", headers=auth(first)).status_code == 401
    assert client.get("/api/v1/submissions", headers=auth(second)).status_code == 200
    teams = {t["name"]: t for t in client.get("/api/v1/admin/teams", headers=h).json()}
    assert [k["revoked_at"] is None for k in teams["team-z"]["tokens"]] == [False, True]
    assert all(second not in str(t) for t in teams.values())  # tokens are never shown again

    log = client.get("/api/v1/admin/audit", headers=h).json()
    assert [e["action"] for e in reversed(log)] == [
        "create_phase", "edit_phase", "publish_phase", "create_team", "disable_team", "enable_team",
        "rekey_team",
    ]  # fmt: skip
    assert {e["actor"] for e in log} == {"organizers"}
    assert log[0]["reason"] == "leaked" and log[-1]["reason"] == "season opens"
    with stack.session() as session:  # the token itself is nowhere in the database, only its hash
        assert all(second not in str(e.detail) for e in session.scalars(select(AuditLog)))


def test_submission_actions(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    admin = add_admin(stack)
    h = auth(admin)
    other_id, other_token = add_team(stack, "team-b")
    done = submit(stack, seeded.team_id, pool_ids[:48], "done")
    finish(stack, done, 0.6)
    pending = submit(stack, other_id, pool_ids[:96], "pending")
    board = lambda: [r["submission_id"] for r in client.get("/api/v1/phases/dev/leaderboard").json()["rows"]]  # noqa: E731
    assert board() == [done]

    listed = client.get("/api/v1/admin/submissions", headers=h).json()
    assert [s["id"] for s in listed] == [pending, done]
    assert [s["id"] for s in client.get("/api/v1/admin/submissions?team=team-b", headers=h).json()] == [
        pending
    ]
    assert [s["id"] for s in client.get("/api/v1/admin/submissions?status=succeeded", headers=h).json()] == [
        done
    ]

    r = client.post(
        f"/api/v1/admin/submissions/{done}/moderation", json={"hidden": True, "reason": "dup"}, headers=h
    )
    assert r.json()["changes"] == {"hidden": [False, True]}
    assert board() == []
    mine = client.get(f"/api/v1/submissions/{done}", headers=auth(seeded.token)).json()
    assert mine["hidden"] is True and mine["moderation_reason"] == "dup"  # the team reads why
    client.post(
        f"/api/v1/admin/submissions/{done}/moderation", json={"hidden": False, "reason": "ok"}, headers=h
    )
    client.post(
        f"/api/v1/admin/submissions/{done}/moderation",
        json={"disqualified": True, "reason": "pool labels"},
        headers=h,
    )
    assert board() == []

    busy = client.post(f"/api/v1/admin/submissions/{pending}/rerun", json={"reason": "x"}, headers=h)
    assert busy.status_code == 409 and busy.json()["error"]["rule"] == "still_pending"
    assert client.post(
        f"/api/v1/admin/submissions/{pending}/cancel", json={"reason": "wrong phase"}, headers=h
    ).is_success
    again = client.post(f"/api/v1/admin/submissions/{pending}/cancel", json={"reason": "x"}, headers=h)
    assert again.status_code == 409 and again.json()["error"]["rule"] == "not_pending"
    theirs = client.get(f"/api/v1/submissions/{pending}", headers=auth(other_token)).json()
    assert theirs["status"] == "cancelled" and theirs["error"] == "cancelled: wrong phase"

    before = stack.broker_messages()
    r = client.post(f"/api/v1/admin/submissions/{done}/rerun", json={"reason": "tier fix"}, headers=h)
    assert r.status_code == 200 and r.json()["requeued"] == [done]
    assert stack.broker_messages() == before + 1  # its validation is queued again
    with stack.session() as session:
        sub = session.get(Submission, done)
        assert (sub.status.value, sub.results, sub.runs, sub.mean_normdel) == ("queued", [], [], None)

    finish(stack, done, 0.7)
    r = client.post("/api/v1/admin/phases/dev/rerun", json={"reason": "tier v2"}, headers=h).json()
    assert r["requeued"] == [done] and r["skipped_pending"] == []  # the cancelled one stays cancelled

    actions = [(e["action"], e["target"]) for e in client.get("/api/v1/admin/audit", headers=h).json()]
    assert actions[::-1] == [
        ("moderate", f"submission:{done}"), ("moderate", f"submission:{done}"), ("moderate", f"submission:{done}"),
        ("cancel", f"submission:{pending}"), ("rerun", f"submission:{done}"), ("rerun_phase", "phase:dev"),
    ]  # fmt: skip


def test_baselines_and_health(stack, client, pool_dir, pool_ids):
    seed_phase(stack, pool_dir, quota_total=0, closes_at=utcnow() - timedelta(days=1))
    admin = add_admin(stack)
    h = auth(admin)
    r = client.post(
        "/api/v1/admin/phases/dev/baselines",
        headers=h,
        files={"file": ("random.txt", "\n".join(pool_ids[::20]).encode())},
        data={"method": "random 5%", "reason": "reference row"},
    )
    assert r.status_code == 202, r.text  # outside the quota and the phase's dates
    sid = r.json()["id"]
    for bad in ("<script>", " leading-space", "x" * 101):  # POST /admin/teams's name rule applies here too
        refused = client.post(
            "/api/v1/admin/phases/dev/baselines",
            headers=h,
            files={"file": ("random.txt", "\n".join(pool_ids[::20]).encode())},
            data={"method": "random 5%", "reason": "reference row", "team": bad},
        )
        assert refused.status_code == 422, (bad, refused.text)
    sub = client.get(f"/api/v1/admin/submissions/{sid}", headers=h).json()
    assert (sub["team"], sub["is_baseline"], sub["status"], sub["n"]) == ("baselines", True, "queued", 24)
    finish(stack, sid, 0.55)
    row = client.get("/api/v1/phases/dev/leaderboard").json()["rows"][0]
    assert (row["submission_id"], row["is_baseline"], row["team"]) == (sid, True, "baselines")

    with stack.session() as session:  # what a worker's reconciler thread writes (worker/reconciler.py)
        session.add(WorkerHeartbeat(name="gpu0@a", queues="gpu,light", pid=1, last_seen_at=utcnow()))
        session.add(
            WorkerHeartbeat(name="gpu1@b", queues="gpu", pid=2, last_seen_at=utcnow() - timedelta(hours=1))
        )
    health = client.get("/api/v1/admin/health", headers=h).json()
    assert health["submissions"] == {"succeeded": 1}
    assert [(w["name"], w["alive"]) for w in health["workers"]] == [("gpu0@a", True), ("gpu1@b", False)]
    assert health["workers_alive"] == 1
    assert health["disk"]["free_bytes"] > 0 and health["disk"]["artifacts_dir"].endswith("cache")
    assert health["queues"] == {"gpu": 0, "light": 1} and health["broker_error"] is None  # its validation
