"""`ingest_pool`: add one source's download to a pool (or replace that source's part of it).

The new pool is rebuilt in a staging folder: the previous pool's records of the other sources are copied
row by row, the source's files are decoded (in worker processes, into scratch arrays first, because which
files are readable is only known after decoding them), and records are kept in sample-ID order. Only then
is the staging folder swapped in (`evaluator.store.PoolWriter`), so an ingest that fails or is killed leaves
the previous pool as it was. Disk needed while it runs: the previous pool, the new one, and the scratch
arrays of the source being ingested.

Each manifest record carries, beyond the store's required fields, `path` (the file relative to the source's
root, recorded in pool.json under `sources`) and `bytes`, so `delbench verify` can re-hash the source files;
and `label`, the class folder, where the layout has one.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluator.ingest import IngestError, UnreadableFiles
from evaluator.ingest.decoding import DecodeJob, DecodeResult, Scratch, decode_all
from evaluator.ingest.destination import claim, require_free_space, scratch_folder
from evaluator.ingest.pool_sources import POOL_SOURCES, SourceFile, discover_pool_source
from evaluator.ingest.resolutions import check_resolutions, tier_resolutions
from evaluator.store import Pool, PoolWriter, open_pool


@dataclass
class PoolIngestReport:
    pool: Path
    source: str
    root: Path
    added: int
    replaced: int  # records of this source the previous pool held
    by_part: dict[str, int]
    skipped: list[tuple[str, str]]  # (absolute path, why)
    source_sizes: dict[str, int]  # records per source in the new pool
    resolutions: list[int]
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(self.source_sizes.values())


def _previous_pool(dest: Path) -> tuple[Pool | None, dict]:
    if not (dest / "pool.json").exists():
        if dest.exists() and any(dest.iterdir()):
            raise IngestError(
                f"{dest}: exists, is not empty and is not a DELBench pool (no pool.json); choose a new --into folder"
            )
        return None, {}
    pool = open_pool(dest)
    foreign = sorted({r["source"] for r in pool.records} - set(POOL_SOURCES))
    if foreign:
        raise IngestError(
            f"{dest}: holds samples of {', '.join(foreign)}, not written by `ingest pool` (a synthetic pool?); "
            "ingest the real data into a new folder"
        )
    return pool, json.loads((dest / "pool.json").read_text())


def _record(source: str, file: SourceFile, result: DecodeResult) -> dict:
    record = {
        "id": file.id,
        "source": source,
        "video": file.video,
        "frame": file.frame,
        "sha256": result.image_sha256,
        "path": file.path,
        "bytes": result.image_bytes,
    }
    if file.label is not None:
        record["label"] = file.label
    return record


def _choose_resolutions(previous: Pool | None, requested: list[int] | None, dest: Path) -> list[int]:
    if previous is None:
        return check_resolutions(requested or tier_resolutions())
    held = sorted(previous.resolutions)
    if requested and check_resolutions(requested) != held:
        raise IngestError(
            f"{dest}: holds resolutions {held}, not {check_resolutions(requested)}; "
            "re-ingest every source into a new folder to change them"
        )
    return held


@dataclass
class _Merge:
    rows: list[tuple[dict, str, int]]  # (record, "previous" or "scratch": the array to copy from, row there)
    replaced: int
    by_part: dict[str, int]


def _merge(
    previous: Pool | None, source: str, files: list[SourceFile], results: list[DecodeResult]
) -> _Merge:
    """The other sources' records from the previous pool and this source's readable files, in ID order."""
    merge = _Merge([], 0, {})
    for i, record in enumerate(previous.records if previous else []):
        if record["source"] == source:
            merge.replaced += 1
        else:
            merge.rows.append((record, "previous", i))
    for k, (file, result) in enumerate(zip(files, results, strict=True)):
        if result.ok:
            merge.rows.append((_record(source, file, result), "scratch", k))
            merge.by_part[file.part] = merge.by_part.get(file.part, 0) + 1
    merge.rows.sort(key=lambda row: row[0]["id"])
    return merge


def _pool_meta(
    previous_meta: dict, source: str, root: Path, added: int, skipped: list[tuple[str, str]]
) -> dict:
    sources = dict(previous_meta.get("sources", {}))
    sources[source] = {
        "root": str(root),
        "images": added,
        "skipped": [{"path": Path(p).relative_to(root).as_posix(), "error": e} for p, e in skipped],
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta = {k: v for k, v in previous_meta.items() if k not in ("format", "size", "resolutions")}
    return meta | {
        "sources": dict(sorted(sources.items())),
        "preprocessing": "centre square crop, bilinear resize",
    }


def ingest_pool(
    source: str,
    root: str | Path,
    dest: str | Path,
    *,
    resolutions: list[int] | None = None,
    workers: int = 1,
    strict: bool = False,
    progress: bool | None = None,
) -> PoolIngestReport:
    """Ingest `source` from its download at `root` into the pool at `dest` (created if absent).

    `resolutions` None: the previous pool's, or for a new pool every tier's. Unreadable files are skipped and
    reported; with `strict` they raise `UnreadableFiles` and nothing is written.
    """
    started = time.perf_counter()
    files = discover_pool_source(source, root)
    root, dest = Path(root).resolve(), Path(dest).absolute()
    with claim(dest) as notes:
        previous, previous_meta = _previous_pool(dest)
        resolutions = _choose_resolutions(previous, resolutions, dest)
        n_kept = sum(r["source"] != source for r in previous.records) if previous else 0
        per_image = sum(3 * r * r for r in resolutions)
        require_free_space(
            dest, per_image * (2 * len(files) + n_kept), f"ingesting {len(files):,} {source} images"
        )
        scratch = Scratch(scratch_folder(dest), len(files), tuple(resolutions), with_masks=False)
        try:
            jobs = [DecodeJob(str(root / f.path)) for f in files]
            results = decode_all(jobs, scratch, workers=workers, desc=f"decode {source}", progress=progress)
            skipped = [(r.failed_path, r.error) for r in results if not r.ok]
            if strict and skipped:
                raise UnreadableFiles(skipped)
            if len(skipped) == len(files):
                first, why = skipped[0]
                raise IngestError(
                    f"{root}: none of its {len(files)} images could be read (first: {first}: {why})"
                )
            merge = _merge(previous, source, files, results)
            meta = _pool_meta(previous_meta, source, root, len(files) - len(skipped), skipped)
            arrays = {
                "previous": {res: previous.images(res) for res in resolutions} if previous else {},
                "scratch": {res: scratch.images(res) for res in resolutions},
            }
            bar = tqdm(
                total=len(merge.rows),
                desc="write pool",
                unit="img",
                disable=None if progress is None else not progress,
            )
            with PoolWriter(dest, len(merge.rows), resolutions, extra_meta=meta) as writer, bar:
                for index, (record, origin, row) in enumerate(merge.rows):
                    writer.put(
                        index, record, {res: np.asarray(arrays[origin][res][row]) for res in resolutions}
                    )
                    bar.update()
                pool = writer.commit()
        finally:
            shutil.rmtree(scratch.folder, ignore_errors=True)
    source_sizes: dict[str, int] = {}
    for record in pool.records:
        source_sizes[record["source"]] = source_sizes.get(record["source"], 0) + 1
    return PoolIngestReport(
        pool=dest,
        source=source,
        root=root,
        added=len(files) - len(skipped),
        replaced=merge.replaced,
        by_part=merge.by_part,
        skipped=skipped,
        source_sizes=source_sizes,
        resolutions=resolutions,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
