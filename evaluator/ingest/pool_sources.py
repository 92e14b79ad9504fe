"""The three pretraining-pool sources of DataDEL, read from the folder layouts their publishers ship.

- hyper-kvasir:   DIR/labeled-images/<tract>/<category>/<class>/*.jpg and DIR/unlabeled-images/images/*.jpg
- kvasir-capsule: DIR/labelled_images/<class>/*.jpg and, where downloaded, DIR/unlabelled_images/**/*.jpg
- gastrovision:   DIR/<class>/*.jpg

A sample's ID is `<source>/<path relative to DIR, posix separators, no extension>`, so it does not depend on
where DIR lives or on the order files are found. `video` and `frame` say which recording a frame came from
where the layout tells: Kvasir-Capsule names its frames `<video id>_<frame number>.jpg`, giving video
`kvasir-capsule/<video id>` and that frame number. Hyper-Kvasir's and Gastrovision's files carry no video, so
each such sample is its own video (its ID) with frame 0: grouping them by class folder would claim a
shared recording that does not exist. The class folder, where there is one, is kept as `label`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator.ingest import IngestError
from evaluator.ingest.tree import check_unique_stems, image_files, relative_stem, require_dir


@dataclass(frozen=True)
class SourceFile:
    id: str
    path: str  # relative to the ingest root, posix separators
    part: str  # the layout folder it was found in, for the report's counts
    video: str
    frame: int
    label: str | None  # the class folder, where the layout has one


# (part name, absolute file path, class label or None)
Found = list[tuple[str, Path, str | None]]

_CAPSULE_NAME = re.compile(r"^(?P<video>[0-9a-f]{6,})_(?P<frame>\d+)$")


def _parts(root: Path, parts: list[tuple[str, bool]], layout: str) -> Found:
    """Files of each (folder, labelled) part present under `root`; a present but imageless folder is an error.

    A labelled part is searched recursively and its files' class is their folder; an unlabelled part's files
    get no label, even in subfolders (those group files, they do not classify them).
    """
    present = [(folder, labelled) for folder, labelled in parts if (root / folder).is_dir()]
    if not present:
        expected = " and/or ".join(f"{root}/{folder}/" for folder, _ in parts)
        raise IngestError(f"{root}: no {layout} layout here: expected {expected}{_hint(root)}")
    found: Found = []
    for folder, labelled in present:
        files = image_files(root / folder, recursive=True)
        if not files:
            raise IngestError(f"no images found under {root / folder}")
        for path in files:
            label = path.parent.name if labelled and path.parent != root / folder else None
            found.append((folder, path, label))
    return found


def _hint(root: Path) -> str:
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1:
        return f" (is the download one level down, in {subdirs[0]}?)"
    return ""


def _hyper_kvasir(root: Path) -> Found:
    return _parts(root, [("labeled-images", True), ("unlabeled-images/images", False)], "Hyper-Kvasir")


def _kvasir_capsule(root: Path) -> Found:
    return _parts(root, [("labelled_images", True), ("unlabelled_images", False)], "Kvasir-Capsule")


def _gastrovision(root: Path) -> Found:
    found: Found = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += [(class_dir.name, path, class_dir.name) for path in image_files(class_dir, recursive=False)]
    if not found:
        raise IngestError(
            f"no images found under {root}/<class>/ (Gastrovision's layout is DIR/<class>/*.jpg){_hint(root)}"
        )
    return found


POOL_SOURCES: dict[str, Callable[[Path], Found]] = {
    "hyper-kvasir": _hyper_kvasir,
    "kvasir-capsule": _kvasir_capsule,
    "gastrovision": _gastrovision,
}


def discover_pool_source(source: str, root: str | Path) -> list[SourceFile]:
    """The source's image files under `root`, sorted by sample ID."""
    if source not in POOL_SOURCES:
        raise IngestError(f"unknown pool source {source!r}; known: {', '.join(POOL_SOURCES)}")
    root = require_dir(Path(root), f"the {source} download").resolve()
    found = POOL_SOURCES[source](root)
    check_unique_stems([path for _, path, _ in found], root)
    files = []
    for part, path, label in found:
        sample_id = f"{source}/{relative_stem(path, root)}"
        if sample_id != sample_id.strip() or any(c in sample_id for c in "\r\n\t"):
            # Selection files are read a line at a time with surrounding whitespace stripped.
            raise IngestError(
                f"{path}: its sample ID {sample_id!r} would begin or end with whitespace or hold a line break; rename the file"
            )
        video, frame = sample_id, 0
        match = _CAPSULE_NAME.match(path.stem) if source == "kvasir-capsule" else None
        if match:
            video, frame = f"{source}/{match['video']}", int(match["frame"])
        files.append(SourceFile(sample_id, path.relative_to(root).as_posix(), part, video, frame, label))
    return sorted(files, key=lambda f: f.id)
