"""`delbench worker`: a Celery worker for the evaluation pipeline, configured from DELBENCH_* settings."""

from __future__ import annotations

import argparse
import faulthandler
import signal
import socket

from app.contract import QUEUES, create_celery
from app.logs import setup_logging
from app.settings import get_settings


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"delbench {command}", description=__doc__)
    parser.add_argument(
        "--queues", default=",".join(QUEUES), help="comma-separated queues to consume (default: %(default)s)"
    )
    parser.add_argument(
        "--name", default=f"delbench@{socket.gethostname()}", help="worker name (unique per host)"
    )
    parser.add_argument(
        "--pool",
        default="solo",
        choices=["solo", "prefork"],
        help="solo: tasks run in the worker process itself (one GPU job at a time; default)",
    )
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints every thread's stack
    setup_logging(args.loglevel)
    app = create_celery(get_settings())
    app.set_current()
    app.set_default()
    import worker.tasks  # noqa: F401  (registers the tasks on this app)
    from worker.reconciler import ReconcilerStep

    app.steps["worker"].add(ReconcilerStep)
    app.worker_main(
        [
            "worker",
            f"--queues={args.queues}",
            f"--hostname={args.name}",
            f"--pool={args.pool}",
            f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel}",
            "--without-gossip",  # no peer chatter: health comes from the database's worker_heartbeats
            "--without-mingle",
        ]
    )
    return 0
