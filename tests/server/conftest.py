"""Fixtures for the server tests: real databases (SQLite, PostgreSQL), real brokers (the filesystem broker,
Redis), a small synthetic pool, and helpers to seed teams and phases through the service functions.

Two stacks: `embedded` (SQLite + filesystem broker, the demo's) and `production` (PostgreSQL + Redis). Each
test gets a clean database: SQLite copies a migrated template file, PostgreSQL truncates every table of a
database migrated once per session. Redis keys carry a per-session prefix, so runs never see each other.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_session_factory, migrate, session_scope
from app.models import Base, Team
from app.services.phases import create_benchmark, create_phase, get_phase
from app.services.submissions import SubmissionMeta, create_submission
from app.services.teams import create_team, create_token
from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MICRO_TIER = REPO / "tests" / "tiers" / "micro.json"
PG_ADMIN_URLS = [
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
]
REDIS_URL = "redis://127.0.0.1:6379"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_postgres() -> None:
    if not port_open(5432):
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (scripts/services.sh starts it)")


def need_redis() -> None:
    if not port_open(6379):
        pytest.skip("Redis does not answer on 127.0.0.1:6379 (scripts/services.sh starts it)")


# ------------------------------------------------------------------------------------------ data


@pytest.fixture(scope="session")
def pool_dir(small_pool) -> Path:
    """The suite's 480-frame synthetic pool at 32 px (the micro tier's resolution) with its eight tasks."""
    return small_pool


@pytest.fixture(scope="session")
def pool_ids(small_pool_ids) -> list[str]:
    return small_pool_ids


def reference_results(pool_dir: Path, ids_file: Path, tmp: Path, seed: int = 0) -> dict:
    """What a participant gets locally from the same selection, tier and seed: `delbench evaluate`."""
    out = tmp / "reference.json"
    done = run_cli(
        "evaluate", "--pool", str(pool_dir), "--ids", str(ids_file), "--tier", str(MICRO_TIER),
        "--seed", str(seed), "--out", str(out), "--cache", str(tmp / "ref-cache"), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="session")
def every_10th(pool_dir, pool_ids, tmp_path_factory) -> tuple[Path, dict]:
    """The selection the demo's example uses (every 10th frame) and its reference results, computed once."""
    tmp = tmp_path_factory.mktemp("reference")
    ids_file = tmp / "every-10th.txt"
    ids_file.write_text("\n".join(pool_ids[::10]) + "\n")
    return ids_file, reference_results(pool_dir, ids_file, tmp)


# ------------------------------------------------------------------------------------- databases


class PostgresServer:
    """Creates throw-away databases on the local PostgreSQL (the `test` database is only for connecting)."""

    def __init__(self):
        self.engine = None
        for candidate in PG_ADMIN_URLS:  # `test` on the dev and CI machines; a fresh cluster has `postgres`
            engine = make_engine(candidate).execution_options(isolation_level="AUTOCOMMIT")
            try:
                with engine.connect():
                    self.engine, self.base_url = engine, candidate.rsplit("/", 1)[0]
                    break
            except OperationalError:
                engine.dispose()
        if self.engine is None:
            pytest.skip(
                f"PostgreSQL answers on 127.0.0.1:5432 but none of {PG_ADMIN_URLS} accepts a connection"
            )
        self.created: list[str] = []

    def create(self) -> str:
        name = f"dlbt_{uuid.uuid4().hex[:12]}"
        with self.engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        url = f"{self.base_url}/{name}"
        migrate(url)
        return url

    def drop_all(self) -> None:
        with self.engine.connect() as c:
            for name in self.created:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    need_postgres()
    server = PostgresServer()
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def pg_session_url(postgres) -> str:
    return postgres.create()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite"
    migrate(f"sqlite:///{path}")
    return path


def truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


# --------------------------------------------------------------------------------------- brokers


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A key prefix for this session's Redis messages; its keys are deleted at the end."""
    need_redis()
    import redis

    prefix = f"dlbt-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def redis_messages(prefix: str) -> int:
    """Messages in the session's queues, by LLEN of the queue lists themselves (not through kombu)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    return sum(client.llen(k) for k in client.scan_iter(f"{prefix}*") if client.type(k) == b"list")


def filesystem_messages(folder: Path) -> int:
    return sum(1 for p in (folder / "queue").glob("*") if p.is_file()) if (folder / "queue").exists() else 0


# ----------------------------------------------------------------------------------------- stacks


@dataclass
class Stack:
    name: str
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    broker_messages: Callable[[], int]
    env: dict[str, str] = field(default_factory=dict)  # the settings as environment, for subprocesses

    def session(self):
        return session_scope(self.factory)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "DELBENCH_DATABASE_URL": settings.database_url,
        "DELBENCH_BROKER_URL": settings.broker_url,
        "DELBENCH_RESULT_BACKEND": settings.result_backend,
        "DELBENCH_BROKER_KEY_PREFIX": settings.broker_key_prefix,
        "DELBENCH_DATA_DIR": str(settings.data_dir),
        "DELBENCH_LEASE_SECONDS": str(settings.lease_seconds),
        "DELBENCH_RECONCILE_SECONDS": str(settings.reconcile_seconds),
        "DELBENCH_PROGRESS_INTERVAL": str(settings.progress_interval),
        "DELBENCH_RATE_LIMIT_FAILED_AUTH": settings.rate_limit_failed_auth,
        "DELBENCH_RATE_LIMIT_UPLOADS": settings.rate_limit_uploads,
    }
    if settings.broker_dir:
        env["DELBENCH_BROKER_DIR"] = str(settings.broker_dir)
    if settings.artifact_store:
        env["DELBENCH_ARTIFACT_STORE"] = settings.artifact_store
    return env


# The suite's many deliberate bad tokens must not trip each other's rate limits (they share one Redis);
# tests/server/test_rate_limits.py sets its own.
UNLIMITED = {"rate_limit_failed_auth": "100000/minute", "rate_limit_uploads": "100000/minute"}


def make_stack(name: str, tmp: Path, database_url: str, redis_prefix: str | None) -> Stack:
    data = tmp / "data"
    if name == "embedded":
        broker_dir = tmp / "broker"
        settings = Settings(
            database_url=database_url,
            broker_url="filesystem://",
            broker_dir=broker_dir,
            result_backend=f"file://{tmp / 'results'}",
            data_dir=data,
            lease_seconds=4,
            reconcile_seconds=1,
            progress_interval=0.2,
            **UNLIMITED,
        )
        (tmp / "results").mkdir(exist_ok=True)
        count = lambda: filesystem_messages(broker_dir)  # noqa: E731
    else:
        settings = Settings(
            database_url=database_url,
            broker_url=f"{REDIS_URL}/0",
            result_backend=f"{REDIS_URL}/1",
            broker_key_prefix=redis_prefix,
            data_dir=data,
            lease_seconds=4,
            reconcile_seconds=1,
            progress_interval=0.2,
            **UNLIMITED,
        )
        count = lambda: redis_messages(redis_prefix)  # noqa: E731
    engine = make_engine(database_url)
    return Stack(name, settings, engine, make_session_factory(engine), count, settings_env(settings))


@pytest.fixture(
    params=["embedded", pytest.param("production", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def stack(request, tmp_path, sqlite_template) -> Iterator[Stack]:
    """A clean database and an empty broker of one stack, for in-process API tests."""
    if request.param == "embedded":
        db = tmp_path / "db.sqlite"
        shutil.copy(sqlite_template, db)
        built = make_stack("embedded", tmp_path, f"sqlite:///{db}", None)
    else:
        url = request.getfixturevalue("pg_session_url")
        prefix = request.getfixturevalue("redis_prefix") + f"{uuid.uuid4().hex[:6]}:"
        built = make_stack("production", tmp_path, url, prefix)
        truncate_all(built.engine)
    yield built
    built.engine.dispose()


# ---------------------------------------------------------------------------------------- seeding


@dataclass
class Seeded:
    phase_slug: str
    team_id: int
    token: str


def seed_phase(
    stack: Stack,
    pool_dir: Path,
    *,
    slug: str = "dev",
    tier: str = str(MICRO_TIER),
    team: str = "team-a",
    **phase_kw,
) -> Seeded:
    with stack.session() as session:
        benchmark = create_benchmark(session=session, slug=f"bench-{slug}", name="DELBench test")
        create_phase(
            session=session,
            benchmark=benchmark,
            slug=slug,
            name=f"phase {slug}",
            pool_dir=pool_dir,
            tier=tier,
            **phase_kw,
        )
        row = create_team(session=session, name=team)
        _, token = create_token(session=session, team=row)
        return Seeded(slug, row.id, token)


@pytest.fixture
def submission_id(stack, pool_dir, pool_ids) -> int:
    """A fresh submission of 96 IDs to the micro-tier phase `dev`, with its pending stages."""
    seeded = seed_phase(stack, pool_dir)
    with stack.session() as session:
        sub = create_submission(
            session=session,
            team=session.get(Team, seeded.team_id),
            phase=get_phase(session=session, slug="dev"),
            data="\n".join(pool_ids[:96]).encode(),
            meta=SubmissionMeta(method="m"),
            max_bytes=10**6,
        )
        return sub.id


def add_team(stack: Stack, name: str) -> str:
    with stack.session() as session:
        _, token = create_token(session=session, team=create_team(session=session, name=name))
        return token


# ------------------------------------------------------------------------------------- processes


def delbench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "delbench", *args]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELBENCH_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        delbench_cmd(*args),
        cwd=REPO,
        env=child_env(env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
