"""The one logging setup of the server's processes (`delbench serve`, `delbench worker`): one line format,
and on a worker the submission, stage and seed of the running stage on every line logged while it runs,
the evaluator's module loggers included."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_stage: ContextVar[str] = ContextVar("delbench_stage", default="")


class LineFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER [submission 12 pretrain (seed 0)]: message`; the bracket only inside a stage."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(stage)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        label = _stage.get()  # read in the thread that logs: handlers format synchronously
        record.stage = f" [{label}]" if label else ""
        return super().format(record)


def setup_logging(level: str) -> None:
    """Root logger to stderr in the one format; uvicorn and Celery are told to use it (`log_config=None`,
    `worker_hijack_root_logger=False`) rather than their own."""
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@contextmanager
def stage_logging(label: str) -> Iterator[None]:
    """Every line logged in this block (this thread) carries `label`."""
    token = _stage.set(label)
    try:
        yield
    finally:
        _stage.reset(token)
