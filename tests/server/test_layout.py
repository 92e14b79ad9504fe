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
        "import app.api.routes.submissions, app.services.dispatch, app.services.reconcile, app.contract\n"
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


def test_admin_cli_bootstraps_a_phase_and_a_team(tmp_path, pool_dir):
    from sqlalchemy import func, select

    from app.db import make_engine
    from app.models import AuditLog, Phase
    from app.services.teams import hash_token
    from tests.server.conftest import run_cli

    env = {
        "DELBENCH_DATABASE_URL": f"sqlite:///{tmp_path / 'admin.sqlite'}",
        "DELBENCH_DATA_DIR": str(tmp_path),
    }
    refused = run_cli("admin", "create-team", "alpha", env=env)  # no database there yet: not made silently
    assert (
        refused.returncode == 1
        and "--create-database" in refused.stderr
        and "DELBENCH_DATABASE_URL" in refused.stderr
    )
    assert not (tmp_path / "admin.sqlite").exists()
    made = run_cli(
        "admin",
        "--create-database",
        "create-phase",
        "p1",
        "--benchmark",
        "b",
        "--pool",
        str(pool_dir),
        "--quota-total",
        "5",
        env=env,
    )
    assert made.returncode == 0 and "phase 'p1' created" in made.stdout, made.stderr
    team = run_cli("admin", "create-team", "alpha", env=env)
    token = team.stdout.strip().splitlines()[-1]
    assert team.returncode == 0 and token.startswith("dlb_")
    bad = run_cli(
        "admin", "create-phase", "p2", "--benchmark", "b", "--pool", str(tmp_path / "nope"), env=env
    )
    assert bad.returncode == 1 and "not a DELBench pool" in bad.stderr  # checked at creation, not in a worker
    assert "Traceback" not in bad.stderr
    again = run_cli("admin", "create-team", "alpha", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    from sqlalchemy.orm import Session

    with Session(make_engine(env["DELBENCH_DATABASE_URL"])) as session:
        assert session.scalar(select(Phase.quota_total).where(Phase.slug == "p1")) == 5
        assert session.scalar(select(func.count()).select_from(AuditLog)) == 2
        from app.models import ApiToken

        assert session.scalar(select(ApiToken.token_hash)) == hash_token(token)  # only the hash is stored


def test_compose_file_is_the_production_shape():
    yaml = pytest.importorskip("yaml")
    from app.settings import Settings

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "worker", "redis", "postgres"}
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        unknown = [k for k in env if k.removeprefix("DELBENCH_").lower() not in Settings.model_fields]
        assert not unknown, f"{name}: not settings: {unknown}"
        assert (
            env["DELBENCH_BROKER_URL"].startswith("redis://") and "postgresql" in env["DELBENCH_DATABASE_URL"]
        )
    assert services["worker"]["command"][:2] == ["delbench", "worker"]
    assert services["api"]["command"][:2] == ["delbench", "serve"]


def test_production_settings_refuse_unsafe_defaults():
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="DELBENCH_ADMIN_TOKEN"):
        Settings(environment="production", database_url="postgresql+psycopg://x@db/delbench")
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(environment="production", admin_token="x" * 40)
    Settings(
        environment="production", admin_token="x" * 40, database_url="postgresql+psycopg://x@db/delbench"
    )


def test_the_worker_host_compose_file_runs_one_worker_per_gpu_pretraining_over_all():
    yaml = pytest.importorskip("yaml")
    from app.settings import Settings

    compose = yaml.safe_load((REPO / "docker-compose.worker-host.yml").read_text())
    services = compose["services"]
    assert set(services) == {"gpu0", "gpu1", "gpu2", "gpu3"}  # no API, database or broker of its own
    for i, (name, service) in enumerate(sorted(services.items())):
        env = service["environment"]
        settings = [k for k in env if k.startswith("DELBENCH_")]
        assert all(k.removeprefix("DELBENCH_").lower() in Settings.model_fields for k in settings), settings
        assert env["CUDA_VISIBLE_DEVICES"] == str(i)  # its finetunes on its own GPU
        assert env["DELBENCH_PRETRAIN_PROCESSES"] == "4" and env["DELBENCH_PRETRAIN_DEVICES"] == "0,1,2,3"
        assert service["command"][:2] == ["delbench", "worker"] and f"{name}@" in service["command"][-1]
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == [
            "0",
            "1",
            "2",
            "3",
        ]
