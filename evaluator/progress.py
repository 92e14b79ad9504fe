"""How the evaluator reports progress: `progress(stage, done, total)`, e.g. ("pretrain", 512, 1024) or
("finetune/etis", 40, 100). The CLI draws it as bars (evaluator.cli.StageProgress), a worker writes it to
the database (worker.runner); nothing in the evaluator depends on who listens."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

ProgressFn = Callable[[str, int, int], None]


class ProgressFile:
    """A `ProgressFn` that keeps the latest (stage, done, total) in a small JSON file, for a process that
    watches another: a worker reads it while `delbench pretrain` runs its ranks under torchrun. Written at
    most every `interval` seconds (and always at a stage's end), atomically."""

    def __init__(self, path: str | Path, interval: float = 0.5):
        self.path = Path(path)
        self.interval = interval
        self._last = -float("inf")

    def __call__(self, stage: str, done: int, total: int) -> None:
        from evaluator.store import write_atomic

        now = time.monotonic()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        record = json.dumps({"stage": stage, "done": done, "total": total}).encode()
        write_atomic(self.path, lambda f: f.write(record))


def read_progress(path: str | Path) -> tuple[str, int, int] | None:
    """What a `ProgressFile` last wrote; None before it wrote anything."""
    try:
        record = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return record["stage"], int(record["done"]), int(record["total"])
