"""What a worker process holds: its settings and database sessions, built once, on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_session_factory, session_scope
from app.settings import Settings, get_settings
from evaluator.artifacts import open_store


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.factory: sessionmaker[Session] = make_session_factory(self.engine)
        self.store = open_store(settings.artifact_store, settings.artifact_store_endpoint)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.factory) as session:
            yield session


@cache
def runtime() -> Runtime:
    return Runtime(get_settings())
