"""The stage runner inside a real Celery task (run locally with `apply`): transient errors are retried with
the stage handed back, anything else fails the submission with the stage's log tail."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from app.contract import create_celery
from app.models import StageStatus, Submission, SubmissionStatus
from app.services import pipeline
from app.settings import get_settings
from worker.runner import run_stage
from worker.runtime import runtime


@pytest.fixture
def worker_app(stack, monkeypatch):
    """A Celery app and the worker runtime, both on this test's stack (the runtime reads the environment)."""
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    runtime.cache_clear()
    yield create_celery(stack.settings)
    runtime().engine.dispose()
    get_settings.cache_clear()
    runtime.cache_clear()


def unreachable_database() -> None:
    """A real connection failure: nothing listens on port 1."""
    create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    ).connect()


def test_transient_errors_are_retried_and_the_stage_completes(worker_app, stack, submission_id):
    failures = []

    def body(ctx) -> dict:
        if len(failures) < 2:
            try:
                unreachable_database()
            except OperationalError as exc:
                failures.append(exc)
                raise
        return {"n": 96}

    @worker_app.task(bind=True, name="test.validate-retried")
    def task(self):
        return run_stage(self, submission_id=submission_id, seed=0, name="validate", body=body, advance=False)

    assert task.apply().get() == {"n": 96}
    assert len(failures) == 2
    with stack.session() as session:
        stage = pipeline.stage_row(session, submission_id, 0, "validate")
        assert (
            stage.status == StageStatus.succeeded and stage.attempts == 1
        )  # hand-backs are not interruptions
        assert stage.detail == {"n": 96}


def test_other_errors_fail_the_submission_with_the_log_tail(worker_app, stack, submission_id):
    def body(ctx) -> dict:
        logging.getLogger("evaluator.test").info("loaded 96 IDs")
        raise ValueError("pool and selection disagree")

    @worker_app.task(bind=True, name="test.validate-failing")
    def task(self):
        return run_stage(self, submission_id=submission_id, seed=0, name="validate", body=body, advance=False)

    logging.getLogger("evaluator.test").setLevel(logging.INFO)
    assert task.apply().get() is None
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        assert sub.status == SubmissionStatus.failed
        assert sub.error == "validate: ValueError: pool and selection disagree"
        # the evaluator's module logger reaches the tail, with the submission, stage and seed on the line
        assert (
            f"INFO evaluator.test [submission {submission_id} validate (seed 0)]: loaded 96 IDs"
            in sub.log_tail
        )
        assert sub.log_tail.endswith("ValueError: pool and selection disagree")
        assert sub.stages[0].status == StageStatus.failed and sub.stages[0].log_tail == sub.log_tail


def test_an_unreachable_database_at_claim_time_is_retried_then_gives_up(worker_app, monkeypatch):
    monkeypatch.setenv("DELBENCH_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("DELBENCH_TASK_MAX_RETRIES", "2")
    get_settings.cache_clear()
    runtime.cache_clear()
    tries = []

    @worker_app.task(bind=True, name="test.validate")
    def task(self):
        tries.append(self.request.retries)
        return run_stage(self, submission_id=1, seed=0, name="validate", body=lambda ctx: {}, advance=False)

    result = task.apply()
    assert tries == [0, 1, 2]  # the first try and two retries, then the error ends the task
    assert result.state == "FAILURE" and isinstance(result.result, OperationalError)


def test_the_validate_task_retries_an_unreachable_database_too(worker_app, monkeypatch):
    """`delbench.validate` reads the submission's first seed inside the runner, where database errors are
    retried: it used to read it before, where one ended the task at once."""
    from worker import tasks

    monkeypatch.setenv("DELBENCH_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("DELBENCH_TASK_MAX_RETRIES", "1")
    get_settings.cache_clear()
    runtime.cache_clear()
    from celery.signals import task_retry

    retried = []

    def count(request=None, **_):
        retried.append(request.retries)

    task_retry.connect(count)
    try:
        result = worker_app.tasks[tasks.validate.name].apply(args=(1,))
    finally:
        task_retry.disconnect(count)
    assert retried == [0]  # retried once (the setting), then the error ends the task
    assert result.state == "FAILURE" and isinstance(result.result, OperationalError)


def test_a_host_whose_pool_copy_is_not_the_phases_refuses_to_run(worker_app, stack, submission_id, pool_dir):
    """Each worker host has its own copy of the pool; the phase recorded the pool's content hash when it was
    set up, and a copy that differs (here: the phase's record of another pool) fails the stage clearly."""
    from app.models import Phase
    from evaluator.store import open_pool
    from worker.tasks import _validate

    with stack.session() as session:
        phase = session.get(Submission, submission_id).phase
        assert phase.pool_hash == open_pool(pool_dir).content_hash  # recorded by create_phase
        session.query(Phase).filter_by(id=phase.id).update({"pool_hash": "0" * 64})
        session.commit()

    @worker_app.task(bind=True, name="test.validate-pool")
    def task(self):
        return run_stage(
            self, submission_id=submission_id, seed=0, name="validate", body=_validate, advance=False
        )

    assert task.apply().get() is None
    with stack.session() as session:
        sub = session.get(Submission, submission_id)
        assert sub.status == SubmissionStatus.failed
        assert f"the pool at {pool_dir}" in sub.error and "is not the phase's pool" in sub.error
        assert "the phase's 000000000000" in sub.error
