"""Fixtures for the board's tests (leaderboard page, admin API, access rules, CLI): the server suite's
stacks and seeding helpers, plus an admin token and submissions taken through every stage."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.models import StageStatus, Submission, SubmissionStatus, Team, WorkerHeartbeat, utcnow
from app.services import pipeline
from app.services.phases import get_phase
from app.services.submissions import STAGE_AGGREGATE, SubmissionMeta, create_submission
from app.services.teams import create_team, create_token
from tests.server.conftest import *  # noqa: F403 (the stacks, databases and brokers)
from tests.server.conftest import seed_phase  # noqa: F401


def auth(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def client(stack):
    with TestClient(create_app(stack.settings)) as c:
        yield c


def add_admin(stack, name: str = "organizers") -> str:
    with stack.session() as session:
        return create_token(session=session, team=create_team(session=session, name=name, is_admin=True))[1]


def add_team(stack, name: str) -> tuple[int, str]:
    with stack.session() as session:
        team = create_team(session=session, name=name)
        return team.id, create_token(session=session, team=team)[1]


def submit(
    stack, team_id: int, ids: list[str], method: str, phase: str = "dev", is_baseline: bool = False, **meta
) -> int:
    with stack.session() as session:
        return create_submission(
            session=session,
            team=session.get(Team, team_id),
            phase=get_phase(session=session, slug=phase),
            data="\n".join(ids).encode(),
            meta=SubmissionMeta(method=method, **meta),
            max_bytes=10**6,
            is_baseline=is_baseline,
        ).id


def start_pretraining(stack, submission_id: int, progress: float) -> None:
    """Put a submission where a worker has it: validated, pretraining `progress` of the way."""
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        for stage in sub.stages:
            if stage.name == "validate":
                pipeline.complete_stage(session=session, stage=stage, detail=None, seconds=0.5, log_tail=None)
            elif stage.name == "pretrain":
                stage.status, stage.progress = StageStatus.running, progress
                stage.started_at = stage.heartbeat_at = utcnow()
        sub.status, sub.current_stage = SubmissionStatus.running, "pretrain"
        sub.started_at = utcnow()
        sub.progress = 0.02 + 0.6 * progress


def beat(stack, name: str, queues: str = "gpu,light") -> None:
    """A live worker's heartbeat row, as the worker writes it."""
    with stack.session() as session:
        session.merge(WorkerHeartbeat(name=name, queues=queues, pid=1, last_seen_at=utcnow()))


def finish(stack, submission_id: int, miou_by_dataset) -> None:
    """Take a submission through every stage with the given per-dataset mIoU (a function of (dataset,
    seed), or a number), writing its results with the same `store_results` the aggregate task calls."""
    from evaluator.metrics import normdel

    level = miou_by_dataset if callable(miou_by_dataset) else (lambda _d, _s: miou_by_dataset)
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        names = sorted(
            {s.name.removeprefix("finetune:") for s in sub.stages if s.name.startswith("finetune:")}
        )
        for stage in sub.stages:
            if stage.name != STAGE_AGGREGATE:
                pipeline.complete_stage(
                    session=session, stage=stage, detail={"seconds": 1.5}, seconds=1.5, log_tail=None
                )
        for stage in [s for s in sub.stages if s.name == STAGE_AGGREGATE]:
            datasets = {
                n: {
                    "miou": level(n, stage.seed),
                    "normdel": normdel(level(n, stage.seed), sub.retained_fraction),
                }
                for n in names
            }
            results = {
                "tier": "micro", "tier_hash": "f" * 64, "code_version": "0.1.0+test", "datasets": datasets,
                "mean_miou": sum(d["miou"] for d in datasets.values()) / len(datasets),
                "mean_normdel": sum(d["normdel"] for d in datasets.values()) / len(datasets),
                "loss_curve": [[step, 1.0 / (1 + step)] for step in range(0, 40, 4)],
                "timings": {"pretrain": 12.5, "finetune": 8.0},
                "seed": stage.seed, "n_selected": sub.n, "retained_fraction": sub.retained_fraction,
            }  # fmt: skip
            stage.status = pipeline.StageStatus.running
            pipeline.store_results(session=session, stage=stage, results=results, seconds=1, log_tail=None)
