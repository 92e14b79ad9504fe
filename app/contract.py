"""The contract between the API and the workers, in one place: the pipeline's stages, the Celery task and
queue of each, and the Celery configuration both sides build their app from. GPU work takes one job at a
time and is acknowledged only when it ends, so a killed worker's job is not lost; light work (validation,
aggregation) has its own queue.

It imports no task code: the API builds its client from it and sends tasks by name; `worker/tasks.py`
registers the tasks under the same names.
"""

from __future__ import annotations

import base64
import enum
import json
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

from app.settings import Settings

QUEUES = ("gpu", "light")


class Stage(enum.StrEnum):
    """A pipeline stage (an `EvaluationStage` row is one of these, `finetune:<dataset>` for a finetune)."""

    validate = "validate"
    pretrain = "pretrain"
    finetune = "finetune"
    aggregate = "aggregate"

    @property
    def task(self) -> str:
        """The Celery task that runs it."""
        return f"delbench.{self.value}"

    @property
    def queue(self) -> str:
        return "gpu" if self in (Stage.pretrain, Stage.finetune) else "light"


ROUTES = {stage.task: {"queue": stage.queue} for stage in Stage} | {
    "celery.chord_unlock": {"queue": "light"},  # polls a chord's results where the backend cannot count them
}


def broker_transport_options(settings: Settings) -> dict:
    url = settings.broker_url
    if url.startswith("filesystem:"):
        root = settings.filesystem_broker_dir.resolve()
        folders = {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)  # the transport does not create them
        return {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
            "polling_interval": 0.2,
        }
    if url.startswith(("redis:", "rediss:")) and settings.broker_key_prefix:
        return {"global_keyprefix": settings.broker_key_prefix}
    return {}


def create_celery(settings: Settings) -> Celery:
    app = Celery(
        "delbench", broker=settings.broker_url, backend=settings.result_backend, set_as_current=False
    )
    app.conf.update(
        # each queue its own direct exchange and routing key: a message lands in exactly one queue
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="light",
        task_default_exchange="light",
        task_default_routing_key="light",
        task_routes=ROUTES,
        task_acks_late=True,  # acknowledged when the task ends: a killed worker's message is not consumed
        task_reject_on_worker_lost=True,  # a pool child killed mid-task gives its message back
        worker_prefetch_multiplier=1,  # one job per worker process at a time, as GPU work needs
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings),
        worker_hijack_root_logger=False,  # delbench's own logging config stays in force
    )
    return app


def queued_submissions(app: Celery, queue: str) -> set[int] | None:
    """The submissions that have a message waiting in `queue`, read from where the broker keeps them (the
    Redis list, the filesystem broker's files); None for a broker whose queue this cannot read. Messages a
    worker has taken are not waiting: they are the worker's, until it acknowledges or dies."""
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        if hasattr(channel, "priority_steps") and hasattr(channel, "client"):  # Redis
            # LRANGE is not among the commands kombu's client prefixes: the key is named in full
            raw = channel.client.lrange((getattr(channel, "global_keyprefix", "") or "") + queue, 0, -1)
        elif hasattr(channel, "data_folder_out"):  # the filesystem broker: one file per message
            raw = []
            for path in Path(channel.data_folder_out).glob(f"*.{queue}.msg"):
                try:
                    raw.append(path.read_bytes())
                except FileNotFoundError:  # taken by a worker meanwhile
                    pass
        else:
            return None
    return {sid for sid in map(_submission_of, raw) if sid is not None}


def _submission_of(raw: bytes) -> int | None:
    """The submission a task message is for: its first integer argument (every DELBench task takes the
    submission's ID first, after a chord's header results for `aggregate`)."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return next((a for a in args if isinstance(a, int) and not isinstance(a, bool)), None)


def queue_size(app: Celery, queue: str) -> int:
    """Messages waiting in `queue` (Redis LLEN, files in the filesystem broker...), by a declare: a passive
    one answers NOT_FOUND on Redis with a key prefix (kombu checks the unprefixed key); declaring an
    existing queue changes nothing."""
    with app.connection_for_read() as connection:
        return connection.default_channel.queue_declare(
            queue=queue, durable=True, auto_delete=False
        ).message_count
