"""Structural guarantees: the API never loads torch, and the migrations are exactly the models."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command

from app.db import alembic_config
from tests.server.conftest import REPO


def test_api_process_never_imports_torch():
    code = (
        "import sys\n"
        "from app.main import create_app\n"
        "import app.api.routes.submissions, app.services.dispatch, app.services.reconcile, worker.celery_app\n"
        "create_app()\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "assert 'worker.tasks' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_worker_tasks_module_loads_torch_only_when_a_stage_runs():
    code = "import sys, worker.tasks\nassert 'torch' not in sys.modules\nprint('ok')\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrations_match_the_models(backend, request, sqlite_template):
    """`alembic check` on a freshly migrated database: a model change without its migration fails here."""
    url = (
        request.getfixturevalue("postgres").create()
        if backend == "postgres"
        else f"sqlite:///{sqlite_template}"
    )
    command.check(alembic_config(url))
    if backend == "postgres":  # and the migration goes down and up again cleanly
        command.downgrade(alembic_config(url), "base")
        command.upgrade(alembic_config(url), "head")
