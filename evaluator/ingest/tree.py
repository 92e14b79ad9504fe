"""Walking a downloaded dataset folder: its image files, without the clutter archives and OSes add."""

from __future__ import annotations

import os
from pathlib import Path

from evaluator.ingest import IngestError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# macOS zips carry `__MACOSX/._name.jpg` resource forks and `.DS_Store`; Windows adds `Thumbs.db`.
_CLUTTER_DIRS = frozenset({"__MACOSX"})


def _is_clutter(name: str) -> bool:
    return name.startswith(".") or name in _CLUTTER_DIRS


def image_files(folder: Path, *, recursive: bool, suffixes: frozenset[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under `folder` (by suffix, any case), sorted by path; hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_clutter(d)) if recursive else []
        for name in filenames:
            if not _is_clutter(name) and os.path.splitext(name)[1].lower() in suffixes:
                found.append(Path(dirpath) / name)
    return sorted(found)


def require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise IngestError(f"{path}: no such folder ({what})")
    if not path.is_dir():
        raise IngestError(f"{path}: not a folder ({what})")
    return path


def relative_stem(path: Path, root: Path) -> str:
    """`path` relative to `root`, posix separators, without its extension: the stable part of a sample ID."""
    return path.relative_to(root).with_suffix("").as_posix()


def check_unique_stems(paths: list[Path], root: Path) -> None:
    """Two files whose IDs would collide (`a.jpg` next to `a.png`) are a layout error, not a silent overwrite."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = relative_stem(path, root)
        if key in seen:
            raise IngestError(f"{path}: same name without extension as {seen[key]}; sample IDs would collide")
        seen[key] = path
