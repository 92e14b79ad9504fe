"""The leaderboard: ranking by mean NormDEL, means and spread over seeds, hidden phases, moderation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.models import StageStatus, Submission, Team, Visibility
from app.services import pipeline
from app.services.phases import get_phase
from app.services.submissions import STAGE_AGGREGATE, SubmissionMeta, create_submission
from app.services.teams import create_team, create_token
from tests.server.conftest import seed_phase


def results_at(names: list[str], level: float) -> dict:
    """A results document with mIoU `level` on every dataset (NormDEL rising with it)."""
    datasets = {n: {"miou": level, "normdel": 0.3 + level / 2} for n in names}
    return {
        "tier": "micro", "tier_hash": "h" * 64, "code_version": "test", "datasets": datasets,
        "mean_miou": level, "mean_normdel": 0.3 + level / 2,
    }  # fmt: skip


def evaluated(stack, team_id: int, ids: list[str], method: str, base_by_seed: dict[int, float]) -> int:
    """A submission taken through every stage, with the given mIoU level per seed (results written by the
    same `store_results` the aggregate task calls)."""
    with stack.session() as session:
        sub = create_submission(
            session=session,
            team=session.get(Team, team_id),
            phase=get_phase(session=session, slug="dev"),
            data="\n".join(ids).encode(),
            meta=SubmissionMeta(method=method),
            max_bytes=10**6,
        )
        sid = sub.id
    with stack.session() as session:
        sub = session.get(Submission, sid)
        names = sorted(
            {s.name.removeprefix("finetune:") for s in sub.stages if s.name.startswith("finetune:")}
        )
        for stage in sub.stages:
            if stage.name != STAGE_AGGREGATE:
                pipeline.complete_stage(session=session, stage=stage, detail={}, seconds=1, log_tail=None)
        for stage in [s for s in sub.stages if s.name == STAGE_AGGREGATE]:
            stage.status = StageStatus.running
            pipeline.store_results(
                session=session,
                stage=stage,
                results=results_at(names, base_by_seed[stage.seed]),
                seconds=1,
                log_tail=None,
            )
    return sid


def test_board_ranks_by_mean_normdel_with_seed_spread_and_hides_until_published(stack, pool_dir, pool_ids):
    seeded = seed_phase(stack, pool_dir, seeds=2, results_visibility=Visibility.hidden)
    with stack.session() as session:
        other = create_team(session=session, name="team-b")
        _, other_token = create_token(session=session, team=other)
        admin = create_team(session=session, name="organizers", is_admin=True)
        _, admin_token = create_token(session=session, team=admin)
        other_id = other.id
    a = evaluated(stack, seeded.team_id, pool_ids[:48], "a", {0: 0.60, 1: 0.62})
    b = evaluated(stack, other_id, pool_ids[:96], "b", {0: 0.70, 1: 0.70})
    hidden = evaluated(stack, other_id, pool_ids[:24], "hidden", {0: 0.9, 1: 0.9})
    with stack.session() as session:
        session.get(Submission, hidden).hidden = True
        session.get(Submission, hidden).moderation_reason = "duplicate entry"

    with TestClient(create_app(stack.settings)) as client:

        def rows(token=None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return client.get("/api/v1/phases/dev/leaderboard", headers=headers).json()["rows"]

        assert rows() == []  # hidden phase: nobody's scores for the public
        assert [r["submission_id"] for r in rows(seeded.token)] == [a]  # a team sees only its own
        assert [r["submission_id"] for r in rows(other_token)] == [b]
        assert sorted(r["submission_id"] for r in rows(admin_token)) == sorted([a, b])
        with stack.session() as session:
            get_phase(session=session, slug="dev").published = True
        board = rows()
        assert [(r["rank"], r["submission_id"]) for r in board] == [
            (1, b),
            (2, a),
        ]  # the moderated one never shows
        row_a = board[1]
        assert row_a["seeds"] == 2 and row_a["mean_miou"] == pytest.approx(0.61)
        assert row_a["mean_normdel"] == pytest.approx(0.3 + 0.61 / 2)
        # the sample sd of the per-seed means (NormDEL here is 0.3 + mIoU / 2): 0.01 / sqrt(2)
        assert row_a["mean_normdel_std"] == pytest.approx(0.01 / 2**0.5)
        assert row_a["mean_miou_std"] == pytest.approx(0.02 / 2**0.5)
        assert len(row_a["datasets"]) == 8
        assert all(
            d["miou"] == pytest.approx(0.61) and d["miou_std"] == pytest.approx(0.02 / 2**0.5)
            for d in row_a["datasets"].values()
        )
        assert board[0]["mean_normdel_std"] == pytest.approx(0.0)
        sub = client.get(
            f"/api/v1/submissions/{a}", headers={"Authorization": f"Bearer {seeded.token}"}
        ).json()
        assert sub["status"] == "succeeded" and sub["results"]["seeds"] == [0, 1]
        assert sub["results"]["mean_miou"] == pytest.approx(row_a["mean_miou"])
