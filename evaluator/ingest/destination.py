"""Exclusive use of a store's folder during an ingest, and recovery from an interrupted one.

`evaluator.store` writes into hidden siblings (`.NAME.staging-…`) and swaps them in with two renames; an
ingest also decodes into `.NAME.scratch-…`. A killed ingest leaves these behind. Under the lock no other ingest
can be using them, so they are removed; and if the kill fell between the swap's two renames (the old store
moved aside, the new one not yet in place), the old store is moved back.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evaluator.ingest import IngestError


def require_free_space(dest: Path, needed: int, what: str) -> None:
    """Refuse up front rather than fail hours in: arrays are memory-mapped, and a write into a sparse file on
    a full disk kills the process with SIGBUS instead of raising."""
    free = shutil.disk_usage(dest.parent).free
    if free < needed:
        raise IngestError(
            f"{dest.parent}: {free / 1e9:.1f} GB free, {what} needs about {needed / 1e9:.1f} GB"
        )


def scratch_folder(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.scratch-{uuid.uuid4().hex[:8]}")


@contextmanager
def claim(dest: Path) -> Iterator[list[str]]:
    """Hold `dest` for one ingest; yields notes on what was recovered from interrupted ingests."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.with_name(f".{dest.name}.lock")
    # The lock file stays: deleting it while another process waits on it would let two hold the lock.
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(f"{dest}: another ingest into it is running (it holds {lock_path})") from None
        yield _recover(dest)


def _recover(dest: Path) -> list[str]:
    notes = []
    old = sorted(dest.parent.glob(f".{dest.name}.old-*"), key=os.path.getmtime)
    if old and not dest.exists():
        os.replace(old.pop(), dest)
        notes.append(f"{dest}: restored the previous store, left aside by an ingest interrupted mid-swap")
    for tag in ("staging", "scratch", "old"):
        for leftover in dest.parent.glob(f".{dest.name}.{tag}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            notes.append(f"{leftover}: removed, left by an interrupted ingest")
    return notes
