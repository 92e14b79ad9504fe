"""Ingestion of the real DataDEL data from the layouts its publishers ship, and verification of the result.

- `pool_sources`: the three pretraining-pool sources (Hyper-Kvasir, Kvasir-Capsule, Gastrovision) → files
  with stable sample IDs `<source>/<relative path stem>`.
- `task_layouts`: the eight downstream segmentation sets → (image, mask) pairs and their train/test split.
- `imaging`: decoding one file: centre square crop, resize (bilinear for images, nearest for masks).
- `decoding`: decoding many files in worker processes into scratch arrays, with a progress bar.
- `pool` / `task`: `ingest_pool` and `ingest_task`, written through `evaluator.store`'s atomic writers.
- `verify`: re-hash the source files a store was built from and check its arrays.
- `cli`: `delbench ingest` and `delbench verify`.

Nothing here imports torch: ingestion runs on a data machine with PIL and numpy only.
"""

from __future__ import annotations


class IngestError(ValueError):
    """Bad input to an ingest (missing folder, unknown name, a layout that does not match); names the path."""


class UnreadableFiles(Exception):
    """A `strict` ingest found files it could not read or decode; nothing was written."""

    def __init__(self, failures: list[tuple[str, str]]):
        super().__init__(f"{len(failures)} unreadable file(s); nothing written")
        self.failures = failures  # (path, why)
