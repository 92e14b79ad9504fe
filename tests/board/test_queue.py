"""A waiting submission's place in the queue and its estimates, on the API, and the organizers' baselines
readable by every participant while they run (their progress, not their logs)."""

from __future__ import annotations

import pytest

from app.models import Submission, Team
from tests.board.conftest import (
    add_admin,
    add_team,
    auth,
    beat,
    finish,
    seed_phase,
    start_pretraining,
    submit,
)


def typical_seconds(stack, submission_id: int) -> float:
    """What the queue should take one seed of an evaluation to cost: the finished one's stage seconds."""
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        return sum(s.seconds for s in sub.stages if s.name != "validate") / len(sub.seeds)


def read(client, token: str, sid: int) -> dict:
    r = client.get(f"/api/v1/submissions/{sid}", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def test_place_in_queue_counts_work_ahead_whoever_submitted_it(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    other_id, _ = add_team(stack, "team-b")
    done = submit(stack, seeded.team_id, pool_ids[:24], "done")
    finish(stack, done, 0.6)
    typical = typical_seconds(stack, done)
    running = submit(stack, other_id, pool_ids[:48], "running")  # another team's: counted, not shown
    start_pretraining(stack, running, 0.5)
    submit(stack, other_id, pool_ids[:72], "first waiting")
    mine = submit(stack, seeded.team_id, pool_ids[:96], "mine")

    sub = read(client, seeded.token, mine)
    assert sub["status"] == "queued" and sub["queue_position"] == 2 and sub["queue_ahead"] == 2
    assert sub["starts_in_seconds"] is None and sub["eta_seconds"] is None  # no worker alive: no estimate

    beat(stack, "gpu0@host")
    with stack.session() as session:
        left = typical * (1 - session.get(Submission, running).progress)
    sub = read(client, seeded.token, mine)
    assert sub["starts_in_seconds"] == pytest.approx(left + typical, rel=1e-6)
    assert sub["eta_seconds"] == pytest.approx(left + 2 * typical, rel=1e-6)

    beat(stack, "gpu1@host")
    beat(stack, "light0@host", queues="light")  # takes no GPU work: not counted
    sub = read(client, seeded.token, mine)
    assert sub["starts_in_seconds"] == pytest.approx((left + typical) / 2, rel=1e-6)

    listed = {s["id"]: s for s in client.get("/api/v1/submissions", headers=auth(seeded.token)).json()}
    assert listed[mine]["queue_position"] == 2 and listed[done]["queue_position"] is None

    start_pretraining(stack, mine, 0.1)  # it has started: no place any more, the running estimate
    sub = read(client, seeded.token, mine)
    assert sub["queue_position"] is None and sub["starts_in_seconds"] is None


def test_no_history_no_estimate(stack, client, pool_dir, pool_ids):
    """Before any evaluation has finished on the server there is a place but no made-up estimate."""
    seeded = seed_phase(stack, pool_dir)
    beat(stack, "gpu0@host")
    first = submit(stack, seeded.team_id, pool_ids[:24], "a")
    second = submit(stack, seeded.team_id, pool_ids[:48], "b")
    assert read(client, seeded.token, first)["queue_position"] == 1
    sub = read(client, seeded.token, second)
    assert sub["queue_position"] == 2 and sub["starts_in_seconds"] is None and sub["eta_seconds"] is None


def test_a_running_baseline_is_readable_by_every_team_without_its_logs(stack, client, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir)
    admin = add_admin(stack)
    with stack.session() as session:
        admin_id = session.query(Team).filter_by(name="organizers").one().id
    baseline = submit(stack, admin_id, pool_ids[:48], "random", is_baseline=True)
    private = submit(stack, admin_id, pool_ids[:24], "organizers' own try")
    start_pretraining(stack, baseline, 0.3)
    with stack.session() as session:
        session.get(Submission, baseline).log_tail = "/srv/delbench/cache/encoders/abc: secret path"

    sub = read(client, seeded.token, baseline)
    assert sub["is_baseline"] and sub["current_stage"] == "pretrain" and sub["progress"] > 0
    assert sub["log_tail"] is None and sub["error"] is None
    assert read(client, admin, baseline)["log_tail"].startswith("/srv")  # its own team sees it
    assert client.get(f"/api/v1/submissions/{private}", headers=auth(seeded.token)).status_code == 404

    with stack.session() as session:
        session.get(Submission, baseline).hidden = True  # moderated: off for everyone but organizers
    assert client.get(f"/api/v1/submissions/{baseline}", headers=auth(seeded.token)).status_code == 404
