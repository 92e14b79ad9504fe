"""Engine and sessions for SQLite (the embedded default) and PostgreSQL (production).

SQLite runs in WAL mode and every transaction that may write starts with `BEGIN IMMEDIATE`: it takes the
write lock up front, so a read-then-write transaction (the quota check) cannot be interleaved with another
writer, and the busy timeout queues writers instead of failing them. Read-only requests (GET) use a deferred
`BEGIN` and never write, so readers do not queue behind each other or behind a writer. On PostgreSQL the quota check locks the team row.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent  # installed with the package
READ_ONLY_OPTION = "delbench_read_only"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # pysqlite's own BEGIN handling is off; see _on_begin
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A read-only session (`read_only_bind`) takes no lock: in WAL mode readers run beside the writer.
        # Taking the write lock for reads too made concurrent GETs queue behind each other, and a starved one
        # fail with "database is locked" (bench/api.py, 4 clients on the leaderboard).
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class DataVersion:
    """A number that changes whenever the database changes: SQLite's `PRAGMA data_version`, read on a
    connection of its own, moves on every commit made by any other connection, in any process. A cache can
    check it in microseconds where a query through a session costs about a millisecond. Calling it returns
    None where there is no such number (PostgreSQL, an in-memory SQLite): then nothing may be taken as
    unchanged."""

    def __init__(self, url: str):
        parsed = make_url(url)
        sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
        self.path = parsed.database if sqlite_file else None
        self.lock = threading.Lock()
        self.connection: sqlite3.Connection | None = None
        # Values are comparable only when read on the same connection: caches key them by this instance.
        self.scope = uuid.uuid4().hex

    def __call__(self) -> int | None:
        if self.path is None:
            return None
        with self.lock:
            if self.connection is None:  # autocommit: no transaction pins an old snapshot
                self.connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            return self.connection.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            if self.connection is not None:
                self.connection.close()
                self.connection = None


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only_bind(engine: Engine) -> Engine:
    """The same engine (and pool) for sessions that only read: on SQLite their transactions take no lock.
    Use with `autoflush=False`, so that nothing such a session touches is ever written."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def has_schema(url: str) -> bool:
    """Whether `url` names a database that DELBench's migrations have set up (without creating a SQLite file
    where there is none)."""
    from sqlalchemy import inspect

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            return False
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return inspect(connection).has_table("alembic_version")
    finally:
        engine.dispose()


def migrate(url: str) -> None:
    """`alembic upgrade head` on `url` (start-up runs it: the schema only changes through migrations)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
