"""Decoding many files in parallel worker processes into scratch arrays, with a progress bar.

Workers write each decoded sample straight into memory-mapped scratch arrays (one row per job) and send back
only hashes, so the parent does no image work and pickles no pixels. A file that cannot be read or decoded
is returned as a failure naming its path; the caller decides whether that is fatal (`--strict`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError
from tqdm import tqdm

from evaluator.ingest import IngestError
from evaluator.ingest.imaging import decode_image, decode_mask, sha256_of


@dataclass(frozen=True)
class DecodeJob:
    image: str  # absolute path
    mask: str | None = None


@dataclass(frozen=True)
class DecodeResult:
    image_sha256: str = ""
    image_bytes: int = 0
    mask_sha256: str = ""
    mask_bytes: int = 0
    empty_mask: bool = False
    failed_path: str = ""  # set when the sample could not be used
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed_path


@dataclass(frozen=True)
class Scratch:
    """Row i of every scratch array holds job i's decoded image (and mask) at one resolution."""

    folder: Path
    size: int
    resolutions: tuple[int, ...]
    with_masks: bool

    def images_path(self, res: int) -> Path:
        return self.folder / f"images_r{res}.npy"

    def masks_path(self, res: int) -> Path:
        return self.folder / f"masks_r{res}.npy"

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for res in self.resolutions:
            np.lib.format.open_memmap(self.images_path(res), "w+", np.uint8, (self.size, res, res, 3))
            if self.with_masks:
                np.lib.format.open_memmap(self.masks_path(res), "w+", np.uint8, (self.size, res, res))

    def images(self, res: int) -> np.ndarray:
        return np.load(self.images_path(res), mmap_mode="r")

    def masks(self, res: int) -> np.ndarray:
        return np.load(self.masks_path(res), mmap_mode="r")


# Scratch arrays a process has opened for writing, by path: opened once per worker, not once per job.
_writable: dict[Path, np.ndarray] = {}


def _row_target(path: Path) -> np.ndarray:
    if path not in _writable:
        _writable[path] = np.load(path, mmap_mode="r+")
    return _writable[path]


def _describe(exc: Exception, reading: bool) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file vanished during the ingest"
    if reading and isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    if isinstance(exc, UnidentifiedImageError):
        return "cannot decode: not an image format PIL can read"
    return f"cannot decode: {exc or type(exc).__name__}"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode_one(scratch: Scratch, indexed_job: tuple[int, DecodeJob]) -> DecodeResult:
    """Decode job `index` into row `index` of the scratch arrays (runs in a worker process)."""
    index, job = indexed_job
    current, reading = job.image, True
    try:
        data = _read(job.image)
        reading = False
        size, images = decode_image(data, list(scratch.resolutions))
        result = {"image_sha256": sha256_of(data), "image_bytes": len(data)}
        if job.mask is not None:
            current, reading = job.mask, True
            mask_data = _read(job.mask)
            reading = False
            masks = decode_mask(mask_data, size, list(scratch.resolutions))
            result |= {"mask_sha256": sha256_of(mask_data), "mask_bytes": len(mask_data)}
            result["empty_mask"] = not masks[max(masks)].any()
            for res, mask in masks.items():
                _row_target(scratch.masks_path(res))[index] = mask
        for res, image in images.items():
            _row_target(scratch.images_path(res))[index] = image
    except Exception as exc:  # any failure to read or decode is this file's problem, reported by path
        return DecodeResult(failed_path=current, error=_describe(exc, reading))
    return DecodeResult(**result)


def _chunksize(n_jobs: int, workers: int) -> int:
    # Big enough to amortise inter-process messages, small enough that the progress bar moves.
    return max(1, min(32, n_jobs // (workers * 16)))


def decode_all(
    jobs: list[DecodeJob], scratch: Scratch, *, workers: int, desc: str, progress: bool | None = None
) -> list[DecodeResult]:
    """Decode every job into `scratch` (created here); results in job order.

    `workers` ≤ 1 decodes in this process. `progress` None shows the bar only on a terminal.
    """
    scratch.create()
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=None if progress is None else not progress)
    results: list[DecodeResult] = []
    try:
        if workers <= 1:
            stream: Iterable[DecodeResult] = map(partial(decode_one, scratch), enumerate(jobs))
            for result in stream:
                results.append(result)
                bar.update()
        else:
            # fork: workers start in milliseconds and need no importable __main__ (spawn re-runs the caller's
            # script, which fails for `python -`). Ingest runs in its own CLI process, with no threads to copy.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                stream = pool.map(
                    partial(decode_one, scratch), enumerate(jobs), chunksize=_chunksize(len(jobs), workers)
                )
                for result in stream:
                    results.append(result)
                    bar.update()
    except BrokenProcessPool:
        raise IngestError("a decoding worker process died (out of memory?); nothing was written") from None
    finally:
        bar.close()
        _writable.clear()
    return results


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
