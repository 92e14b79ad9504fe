"""`ingest_task`: one downstream set's download → a task store (`TASKS/<name>/`), written atomically.

Images are cropped and resized exactly as pool images are; masks get the same crop, are binarised and resized
with nearest-neighbour (`evaluator.ingest.imaging`). task.json records, beyond the store's fields, the
download's root, the split rule, and each sample's image and mask (path relative to the root, sha256, bytes)
in array order, so `delbench verify` can re-hash them and anyone can see which file is which row.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluator.ingest import IngestError, UnreadableFiles
from evaluator.ingest.decoding import DecodeJob, DecodeResult, Scratch, decode_all
from evaluator.ingest.destination import claim, require_free_space, scratch_folder
from evaluator.ingest.resolutions import check_resolutions, tier_resolutions
from evaluator.ingest.task_layouts import TaskSample, discover_task
from evaluator.store import TaskSplit, write_task


@dataclass
class TaskIngestReport:
    task: Path
    name: str
    root: Path
    split_rule: str
    counts: dict[str, int]  # per split
    by_part: dict[str, int]
    empty_masks: int  # masks with no foreground at the largest resolution: worth a look if many
    skipped: list[tuple[str, str]]  # (absolute path, why)
    resolutions: list[int]
    seconds: float
    notes: list[str] = field(default_factory=list)


def _take(array: np.ndarray, rows: list[int]) -> np.ndarray:
    """`array[rows]`, as a view of the memory-mapped scratch when the rows are a run (no file was skipped):
    write_task then streams it to disk instead of holding a copy of the split in memory."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return array[rows[0] : rows[0] + len(rows)]
    return np.asarray(array[rows])


def _file_records(samples: list[TaskSample], results: list[DecodeResult], rows: list[int]) -> list[dict]:
    return [
        {
            "key": samples[i].key,
            "image": samples[i].image,
            "image_sha256": results[i].image_sha256,
            "image_bytes": results[i].image_bytes,
            "mask": samples[i].mask,
            "mask_sha256": results[i].mask_sha256,
            "mask_bytes": results[i].mask_bytes,
        }
        for i in rows
    ]


def ingest_task(
    name: str,
    root: str | Path,
    tasks_dir: str | Path,
    *,
    resolutions: list[int] | None = None,
    workers: int = 1,
    strict: bool = False,
    progress: bool | None = None,
) -> TaskIngestReport:
    """Ingest task `name` from its download at `root` into `tasks_dir/name`, replacing any previous one."""
    started = time.perf_counter()
    layout = discover_task(name, root)
    root, dest = Path(root).resolve(), Path(tasks_dir).absolute() / name
    resolutions = check_resolutions(resolutions or tier_resolutions())
    # Train samples first, then test, each in key order: a split is one run of scratch rows.
    samples = sorted(layout.samples, key=lambda s: (s.split != "train", s.key))
    with claim(dest) as notes:
        per_sample = sum(4 * r * r for r in resolutions)  # RGB image + mask
        require_free_space(dest, 2 * per_sample * len(samples), f"ingesting {len(samples):,} {name} samples")
        scratch = Scratch(scratch_folder(dest), len(samples), tuple(resolutions), with_masks=True)
        try:
            jobs = [DecodeJob(str(root / s.image), str(root / s.mask)) for s in samples]
            results = decode_all(jobs, scratch, workers=workers, desc=f"decode {name}", progress=progress)
            skipped = [(r.failed_path, r.error) for r in results if not r.ok]
            if strict and skipped:
                raise UnreadableFiles(skipped)
            rows = {
                split: [i for i, s in enumerate(samples) if s.split == split and results[i].ok]
                for split in ("train", "test")
            }
            for split, kept in rows.items():
                if not kept:
                    raise IngestError(
                        f"{root}: no readable {split} sample ({len(skipped)} file(s) unreadable)"
                    )
            splits = {
                res: {
                    split: TaskSplit(_take(scratch.images(res), kept), _take(scratch.masks(res), kept))
                    for split, kept in rows.items()
                }
                for res in resolutions
            }
            meta = {
                "source_root": str(root),
                "split_rule": layout.split_rule,
                "preprocessing": "centre square crop; images bilinear, masks binarised (>127) then nearest",
                "files": {split: _file_records(samples, results, kept) for split, kept in rows.items()},
                "skipped": [{"path": Path(p).relative_to(root).as_posix(), "error": e} for p, e in skipped],
            }
            write_task(dest.parent, name, layout.kind, splits, meta)
        finally:
            shutil.rmtree(scratch.folder, ignore_errors=True)
    by_part: dict[str, int] = {}
    for i in rows["train"] + rows["test"]:
        by_part[samples[i].part] = by_part.get(samples[i].part, 0) + 1
    return TaskIngestReport(
        task=dest,
        name=name,
        root=root,
        split_rule=layout.split_rule,
        counts={split: len(kept) for split, kept in rows.items()},
        by_part=by_part,
        empty_masks=sum(r.empty_mask for r in results if r.ok),
        skipped=skipped,
        resolutions=resolutions,
        seconds=time.perf_counter() - started,
        notes=notes,
    )
