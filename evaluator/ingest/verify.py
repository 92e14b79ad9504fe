"""`verify`: is a pool or a tasks folder complete, and are the files it was ingested from unchanged?

A store holds arrays, not the source files, so verification has two halves:
- the store itself: pool.json / task.json and the manifest parse, every array file loads memory-mapped with
  the shape and dtype its metadata promises (a truncated .npy fails here), pool IDs are unique, task masks
  are binary and both splits non-empty;
- the source files: every file recorded at ingest (pool manifest `path`, task.json `files`) is re-hashed under
  its recorded root (or one given in `roots`) and reported by path as missing, truncated (fewer bytes than
  at ingest), resized (more bytes) or modified (same size, different sha256).
A store written without source records (the synthetic pool) gets the first half only, and a note says so.
Problems are collected, never raised: the report lists them all.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluator.ingest import IngestError
from evaluator.store import TASK_NAMES, StoreError, list_tasks, open_pool, open_task, pool_content_hash


@dataclass
class VerifyReport:
    target: Path
    kind: str  # "pool" or "tasks"
    arrays_checked: int = 0
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)  # each names the file at fault
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RecordedFile:
    path: Path
    sha256: str
    size: int | None  # bytes at ingest, where recorded
    what: str  # which sample it belongs to, for the report


def _file_problem(file: RecordedFile) -> str | None:
    try:
        size = file.path.stat().st_size
        if file.size is not None and size < file.size:
            return f"{file.path}: truncated: {size:,} of {file.size:,} bytes ({file.what})"
        if file.size is not None and size > file.size:
            return f"{file.path}: changed size: {size:,} bytes, {file.size:,} at ingest ({file.what})"
        digest = hashlib.sha256()
        with open(file.path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return f"{file.path}: missing ({file.what})"
    except OSError as exc:
        return f"{file.path}: unreadable: {exc.strerror or exc} ({file.what})"
    if digest.hexdigest() != file.sha256:
        return f"{file.path}: modified: sha256 differs from the ingest's ({file.what})"
    return None


def _rehash(files: list[RecordedFile], report: VerifyReport, workers: int, progress: bool | None) -> None:
    # Hashing releases the GIL and reading waits on disk: threads are enough.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = tqdm(
            pool.map(_file_problem, files),
            total=len(files),
            desc="verify",
            unit="file",
            disable=None if progress is None else not progress,
        )
        report.problems += [problem for problem in bar if problem]
    report.files_checked += len(files)


def verify_pool(
    path: Path, *, roots: dict[str, Path], workers: int, progress: bool | None = None
) -> VerifyReport:
    report = VerifyReport(path, "pool")
    try:
        pool = open_pool(path)
        meta = json.loads((path / "pool.json").read_text())
    except (StoreError, json.JSONDecodeError) as exc:
        report.problems.append(str(exc))
        return report
    for res in pool.resolutions:
        try:
            pool.images(res)  # loads the header and maps the data: a short or reshaped file fails here
            report.arrays_checked += 1
        except StoreError as exc:
            report.problems.append(str(exc))
    if pool.recorded_hash and not report.problems:
        actual = pool_content_hash(path, pool.resolutions)
        if actual != pool.recorded_hash:
            report.problems.append(
                f"{path}: its manifest and arrays hash to {actual[:12]}, but pool.json records "
                f"{pool.recorded_hash[:12]} (changed or damaged since it was written)"
            )
    duplicates = [sample_id for sample_id, n in Counter(pool.ids).items() if n > 1]
    if duplicates:
        report.problems.append(
            f"{path / 'manifest.jsonl'}: {len(duplicates)} duplicate ID(s), e.g. {duplicates[0]!r}"
        )
    recorded = [r for r in pool.records if "path" in r]
    if not recorded:
        report.notes.append(
            f"{path}: records name no source files (a synthetic pool?): checked the arrays only"
        )
        return report
    sources = meta.get("sources", {})
    files = []
    for source in sorted({r["source"] for r in recorded}):
        root = roots.get(source) or (Path(sources[source]["root"]) if source in sources else None)
        if root is None:
            report.problems.append(
                f"{path / 'pool.json'}: no root recorded for source {source!r}; pass --root {source}=DIR"
            )
            continue
        if not root.is_dir():
            report.problems.append(
                f"{root}: the {source} download is gone (pass --root {source}=DIR if it moved)"
            )
            continue
        files += [
            RecordedFile(root / r["path"], r["sha256"], r.get("bytes"), f"sample {r['id']}")
            for r in recorded
            if r["source"] == source
        ]
    _rehash(files, report, workers, progress)
    return report


def _check_task(task_dir: Path, report: VerifyReport, roots: dict[str, Path]) -> list[RecordedFile]:
    try:
        meta = json.loads((task_dir / "task.json").read_text())
        resolutions = list(meta["resolutions"])
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        report.problems.append(f"{task_dir / 'task.json'}: unreadable ({exc})")
        return []
    for res in resolutions:
        try:
            task = open_task(task_dir, res)
        except (StoreError, KeyError) as exc:
            report.problems.append(f"{task_dir}: {exc}" if isinstance(exc, KeyError) else str(exc))
            continue
        for split_name, split in (("train", task.train), ("test", task.test)):
            where = task_dir / f"r{res}" / f"{split_name}_masks.npy"
            if len(split.images) == 0:
                report.problems.append(f"{task_dir}: the {split_name} split is empty")
            elif int(np.max(split.masks)) > 1:
                report.problems.append(
                    f"{where}: masks are not binary (values up to {int(np.max(split.masks))})"
                )
            report.arrays_checked += 2
    files_meta = meta.get("files")
    if not files_meta:
        report.notes.append(
            f"{task_dir}: records no source files (a synthetic task?): checked the arrays only"
        )
        return []
    root = roots.get(meta["name"]) or Path(meta["source_root"])
    if not root.is_dir():
        report.problems.append(
            f"{root}: the {meta['name']} download is gone (pass --root {meta['name']}=DIR if it moved)"
        )
        return []
    files = []
    for split_name, entries in files_meta.items():
        for entry in entries:
            what = f"{meta['name']} {split_name} sample {entry['key']}"
            files.append(
                RecordedFile(root / entry["image"], entry["image_sha256"], entry.get("image_bytes"), what)
            )
            files.append(
                RecordedFile(
                    root / entry["mask"], entry["mask_sha256"], entry.get("mask_bytes"), f"mask of {what}"
                )
            )
    return files


def verify_tasks(
    path: Path, *, roots: dict[str, Path], workers: int, progress: bool | None = None
) -> VerifyReport:
    report = VerifyReport(path, "tasks")
    task_dirs = [path] if (path / "task.json").exists() else [path / name for name in list_tasks(path)]
    files = []
    for task_dir in task_dirs:
        files += _check_task(task_dir, report, roots)
    if len(task_dirs) > 1 or not (path / "task.json").exists():
        missing = [n for n in TASK_NAMES if not (path / n / "task.json").exists()]
        if missing:
            report.notes.append(
                f"{path}: {len(missing)} of the eight tasks not ingested yet: {', '.join(missing)}"
            )
    _rehash(files, report, workers, progress)
    return report


def verify(
    path: str | Path, *, roots: dict[str, Path] | None = None, workers: int = 1, progress: bool | None = None
) -> VerifyReport:
    """Verify a pool (a folder with pool.json), a tasks folder (*/task.json) or one task (task.json)."""
    path = Path(path)
    roots = roots or {}
    if not path.is_dir():
        raise IngestError(f"{path}: no such folder (expected a pool or a tasks folder)")
    if (path / "pool.json").exists():
        return verify_pool(path, roots=roots, workers=workers, progress=progress)
    if (path / "task.json").exists() or any(path.glob("*/task.json")):
        return verify_tasks(path, roots=roots, workers=workers, progress=progress)
    raise IngestError(f"{path}: neither a pool (no pool.json) nor a tasks folder (no */task.json)")
