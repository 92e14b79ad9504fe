"""On-disk stores: the pretraining pool and the downstream tasks.

Pool (`POOL/`):
    pool.json              {"format": "delbench-pool/1", "size": N, "resolutions": [64, ...]}
    manifest.jsonl         one JSON object a line, in array order: id, source, video, frame, sha256 (+ extras)
    arrays/r{res}.npy      uint8 [N, res, res, 3], loaded memory-mapped
The manifest is the public listing participants select from; IDs are `<source>/<relative path stem>`.

Tasks (`TASKS/<name>/`):
    task.json              {"format": "delbench-task/1", "name", "kind", "resolutions", "n_train", "n_test", ...}
    r{res}/{split}_images.npy   uint8 [n, res, res, 3]
    r{res}/{split}_masks.npy    uint8 [n, res, res], values {0, 1}
Test masks are the hidden labels: they never leave the server.

Every writer builds into a temporary sibling folder and swaps it in with renames, so an interrupted write
leaves the previous store readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

POOL_FORMAT = "delbench-pool/1"
TASK_FORMAT = "delbench-task/1"
MANIFEST_FIELDS = ("id", "source", "video", "frame", "sha256")

# The eight downstream datasets of DataDEL (the DataDEL paper), by the names results use.
TASK_NAMES = (
    "kvasir-instrument",
    "kvasir-seg",
    "imageclef-polyp",
    "etis",
    "polypgen",
    "cvc-300",
    "cvc-clinicdb",
    "cvc-colondb",
)


class StoreError(ValueError):
    """A pool or task store is missing, malformed or incomplete; the message names the file."""


class DiskFullError(OSError):
    """A write ran out of disk space: an infrastructure fault to fix and retry, never the team's doing."""


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temporary sibling, then rename: a reader sees the old file or the whole new
    one. `write(f)` fills the open binary file. On a full disk the temporary file is removed and
    DiskFullError says where and how much space is left (torch itself reports only 'unexpected pos N vs M')."""
    import errno

    path = Path(path)
    tmp = _tmp_sibling(path, "tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        full = getattr(exc, "errno", None) == errno.ENOSPC or "unexpected pos" in str(exc) or free < (1 << 20)
        if full:
            raise DiskFullError(
                errno.ENOSPC,
                f"no space left on the disk at {path.parent} ({free:,} bytes free) while writing {path.name}; "
                "free some space and retry",
            ) from None
        raise
    os.replace(tmp, path)


def save_torch_atomic(obj, path: str | Path) -> None:
    import torch

    write_atomic(path, lambda f: torch.save(obj, f))


def write_json_atomic(path: str | Path, doc) -> None:
    """`doc` as indented JSON."""
    write_atomic(path, lambda f: f.write((json.dumps(doc, indent=2) + "\n").encode()))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tmp_sibling(dest: Path, tag: str) -> Path:
    return dest.with_name(f".{dest.name}.{tag}-{uuid.uuid4().hex[:8]}")


def swap_into_place(staging: Path, dest: Path) -> None:
    """Replace `dest` by the fully written `staging` folder: the old one is moved aside, then deleted."""
    old = None
    if dest.exists():
        old = _tmp_sibling(dest, "old")
        os.replace(dest, old)
    os.replace(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------- pool


def pool_content_hash(path: Path, resolutions: list[int] | tuple[int, ...]) -> str:
    """The pool's identity: sha256 over its manifest's and its arrays' bytes. Two copies of a pool on two
    hosts have the same one exactly when they hold the same samples in the same order with the same pixels."""
    parts = [f"manifest.jsonl:{file_sha256(path / 'manifest.jsonl')}"]
    parts += [f"r{res}.npy:{file_sha256(path / 'arrays' / f'r{res}.npy')}" for res in sorted(resolutions)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass
class Pool:
    path: Path
    records: list[dict]
    resolutions: tuple[int, ...]
    recorded_hash: str | None = None  # pool.json's `content_sha256`, written with the pool

    @cached_property
    def content_hash(self) -> str:
        """`pool_content_hash`, as recorded when the pool was written (`delbench verify` re-computes it from
        the bytes); computed here for a pool written before pools recorded it."""
        return self.recorded_hash or pool_content_hash(self.path, self.resolutions)

    @property
    def size(self) -> int:
        return len(self.records)

    @cached_property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    @cached_property
    def index_of(self) -> dict[str, int]:
        return {sample_id: i for i, sample_id in enumerate(self.ids)}

    def images(self, resolution: int) -> np.ndarray:
        """The pool's images at `resolution` if stored, else at the nearest stored one (callers resize)."""
        if not self.resolutions:
            raise StoreError(f"{self.path}: the pool holds no image arrays")
        stored = resolution if resolution in self.resolutions else self.nearest_resolution(resolution)
        return _load_array(self.path / "arrays" / f"r{stored}.npy", (self.size, stored, stored, 3))

    def nearest_resolution(self, resolution: int) -> int:
        larger = [r for r in self.resolutions if r >= resolution]
        return min(larger) if larger else max(self.resolutions)


def _load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    if not path.exists():
        raise StoreError(f"{path}: missing")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from None
    if array.dtype != np.uint8 or array.shape != shape:
        raise StoreError(f"{path}: expected uint8 {shape}, found {array.dtype} {array.shape}")
    return array


def read_manifest(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StoreError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            missing = [k for k in MANIFEST_FIELDS if k not in record]
            if missing:
                raise StoreError(f"{path}:{line_no}: missing field(s) {', '.join(missing)}")
            records.append(record)
    return records


def open_pool(path: str | Path) -> Pool:
    path = Path(path)
    meta_path = path / "pool.json"
    if not meta_path.exists():
        raise StoreError(
            f"{path}: not a DELBench pool (no pool.json); create one with `delbench synth` or `delbench ingest pool`"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != POOL_FORMAT:
        raise StoreError(f"{meta_path}: format {meta.get('format')!r}, expected {POOL_FORMAT!r}")
    records = read_manifest(path / "manifest.jsonl")
    if len(records) != meta["size"]:
        raise StoreError(f"{path}: manifest has {len(records)} records, pool.json says {meta['size']}")
    return Pool(
        path=path,
        records=records,
        resolutions=tuple(meta["resolutions"]),
        recorded_hash=meta.get("content_sha256"),
    )


class PoolWriter:
    """Writes a pool of a known size into a staging folder; `commit()` swaps it into place atomically.

    Use as a context manager: leaving the block by an exception deletes the staging folder and leaves any
    previous pool at `dest` untouched.
    """

    def __init__(self, dest: str | Path, size: int, resolutions: list[int], extra_meta: dict | None = None):
        self.dest = Path(dest)
        self.size = size
        self.resolutions = sorted(set(resolutions))
        self.extra_meta = extra_meta or {}
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.staging = _tmp_sibling(self.dest, "staging")
        (self.staging / "arrays").mkdir(parents=True)
        self.records: list[dict | None] = [None] * size
        self.arrays = {
            res: np.lib.format.open_memmap(
                self.staging / "arrays" / f"r{res}.npy", mode="w+", dtype=np.uint8, shape=(size, res, res, 3)
            )
            for res in self.resolutions
        }

    def put(self, index: int, record: dict, images: dict[int, np.ndarray]) -> None:
        self.records[index] = record
        for res, image in images.items():
            self.arrays[res][index] = image

    def commit(self) -> Pool:
        missing = [i for i, r in enumerate(self.records) if r is None]
        if missing:
            raise StoreError(
                f"pool writer: {len(missing)} of {self.size} samples never written (first: index {missing[0]})"
            )
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()
        with open(self.staging / "manifest.jsonl", "w", encoding="utf-8") as f:
            for record in self.records:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
        meta = {"format": POOL_FORMAT, "size": self.size, "resolutions": self.resolutions, **self.extra_meta,
                "content_sha256": pool_content_hash(self.staging, self.resolutions)}  # fmt: skip
        (self.staging / "pool.json").write_text(json.dumps(meta, indent=2) + "\n")
        swap_into_place(self.staging, self.dest)
        return open_pool(self.dest)

    def abort(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> PoolWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.staging.exists():
            self.abort()


# -------------------------------------------------------------------------------------------- tasks


@dataclass
class TaskSplit:
    images: np.ndarray  # uint8 [n, H, W, 3]
    masks: np.ndarray  # uint8 [n, H, W] in {0, 1}


@dataclass
class Task:
    name: str
    kind: str  # "polyp" or "instrument"
    resolution: int
    train: TaskSplit
    test: TaskSplit
    meta: dict


def write_task(
    tasks_dir: str | Path,
    name: str,
    kind: str,
    splits: dict[int, dict[str, TaskSplit]],
    extra_meta: dict | None = None,
) -> Path:
    """Write one task, `splits[resolution][split_name]`, atomically to `tasks_dir/name`."""
    dest = Path(tasks_dir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = _tmp_sibling(dest, "staging")
    try:
        counts = {}
        for res, by_split in splits.items():
            (staging / f"r{res}").mkdir(parents=True)
            for split_name, split in by_split.items():
                if split.masks.max(initial=0) > 1:
                    raise StoreError(f"task {name}: {split_name} masks must be binary (0/1)")
                np.save(
                    staging / f"r{res}" / f"{split_name}_images.npy",
                    np.ascontiguousarray(split.images, np.uint8),
                )
                np.save(
                    staging / f"r{res}" / f"{split_name}_masks.npy",
                    np.ascontiguousarray(split.masks, np.uint8),
                )
                counts[f"n_{split_name}"] = int(len(split.images))
        meta = {"format": TASK_FORMAT, "name": name, "kind": kind, "resolutions": sorted(splits), **counts}
        meta.update(extra_meta or {})
        (staging / "task.json").write_text(json.dumps(meta, indent=2) + "\n")
        swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def open_task(task_dir: str | Path, resolution: int) -> Task:
    """A task at `resolution` (or the nearest stored one; callers resize)."""
    task_dir = Path(task_dir)
    meta_path = task_dir / "task.json"
    if not meta_path.exists():
        raise StoreError(f"{task_dir}: not a DELBench task (no task.json)")
    meta = json.loads(meta_path.read_text())
    stored = list(meta["resolutions"])
    larger = [r for r in stored if r >= resolution]
    res = resolution if resolution in stored else (min(larger) if larger else max(stored))
    splits = {}
    for split_name in ("train", "test"):
        n = meta[f"n_{split_name}"]
        images = _load_array(task_dir / f"r{res}" / f"{split_name}_images.npy", (n, res, res, 3))
        masks = _load_array(task_dir / f"r{res}" / f"{split_name}_masks.npy", (n, res, res))
        splits[split_name] = TaskSplit(images=images, masks=masks)
    return Task(
        name=meta["name"],
        kind=meta["kind"],
        resolution=res,
        train=splits["train"],
        test=splits["test"],
        meta=meta,
    )


def list_tasks(tasks_dir: str | Path) -> list[str]:
    """Names of the tasks stored under `tasks_dir`, in the canonical order of TASK_NAMES, then others."""
    tasks_dir = Path(tasks_dir)
    if not tasks_dir.is_dir():
        raise StoreError(f"{tasks_dir}: no tasks folder")
    present = {p.name for p in tasks_dir.iterdir() if (p / "task.json").exists()}
    if not present:
        raise StoreError(f"{tasks_dir}: holds no task (no */task.json)")
    return [n for n in TASK_NAMES if n in present] + sorted(present - set(TASK_NAMES))
