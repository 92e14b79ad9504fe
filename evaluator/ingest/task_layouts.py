"""The eight downstream segmentation sets, read from the folder layouts their publishers ship.

Each image is paired with its mask by file stem (PolypGen's masks add `_mask` to the stem). An image without
a mask, a mask without an image, or two files with one stem is a layout error naming the path: a silently
dropped pair would change the task.

Splits. Kvasir-Instrument ships its official split (`train.txt`, `test.txt`, one image name a line). The
others publish none, so DELBench splits by a hash of the file stem: samples are ordered by
sha256(stem) (hex) and the first round(0.8·n) go to train, the rest to test (at least one in each). The split
depends only on the set of stems, not on folder names, file format (CVC-ClinicDB's TIFF and PNG releases
split alike) or the order files are listed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator.ingest import IngestError
from evaluator.ingest.tree import IMAGE_SUFFIXES, image_files, require_dir
from evaluator.store import TASK_NAMES

HASH_SPLIT = "sha256(stem) order, first round(0.8 n) train, rest test"
OFFICIAL_SPLIT = "official (train.txt / test.txt)"


@dataclass(frozen=True)
class TaskSample:
    key: str  # the image's file stem: pairs it with its mask and seeds the hash split
    part: str  # the layout folder it came from, for the report's counts
    image: str  # relative to the ingest root, posix separators
    mask: str
    split: str  # "train" or "test"


@dataclass(frozen=True)
class TaskLayout:
    name: str
    kind: str  # "polyp" or "instrument"
    split_rule: str
    samples: list[TaskSample]


# (key, part, image path, mask path)
Pairs = list[tuple[str, str, Path, Path]]


def _pair(root: Path, image_dir: str, mask_dir: str, *, mask_suffix: str = "", part: str = "") -> Pairs:
    images_at = require_dir(root / image_dir, "the images folder")
    masks_at = require_dir(root / mask_dir, "the masks folder")
    images = _by_stem(image_files(images_at, recursive=False), "")
    masks = _by_stem(image_files(masks_at, recursive=False), mask_suffix)
    if not images:
        raise IngestError(f"no images found under {images_at}")
    if not masks:
        raise IngestError(f"no masks found under {masks_at}")
    _refuse_unpaired(set(masks) - set(images), masks, f"mask(s) without an image in {images_at}")
    _refuse_unpaired(set(images) - set(masks), images, f"image(s) without a mask in {masks_at}")
    return [(key, part or image_dir, images[key], masks[key]) for key in sorted(images)]


def _by_stem(paths: list[Path], suffix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        stem = path.stem[: -len(suffix)] if suffix and path.stem.endswith(suffix) else path.stem
        if stem in found:
            raise IngestError(f"{path}: same stem as {found[stem]}; cannot tell which to pair")
        found[stem] = path
    return found


def _refuse_unpaired(keys: set[str], paths: dict[str, Path], what: str) -> None:
    if keys:
        first = sorted(keys)[:3]
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        raise IngestError(f"{len(keys)} {what}: {', '.join(str(paths[k]) for k in first)}{more}")


def hash_split(keys: list[str]) -> dict[str, str]:
    """The documented deterministic 80/20 split of the sets that publish none."""
    if len(keys) < 2:
        raise IngestError(f"a task needs at least 2 samples to split into train and test; found {len(keys)}")
    ordered = sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    n_train = min(len(keys) - 1, max(1, (8 * len(keys) + 5) // 10))  # round half up, both splits non-empty
    return {key: ("train" if i < n_train else "test") for i, key in enumerate(ordered)}


def _read_split_list(path: Path, known: set[str]) -> list[str]:
    if not path.is_file():
        raise IngestError(
            f"{path}: not found (Kvasir-Instrument's official split lists train.txt and test.txt)"
        )
    names = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        name = Path(line.strip()).name
        if not name:
            continue
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
        if stem not in known:
            raise IngestError(
                f"{path}:{line_no}: {line.strip()!r} names no image in {path.parent / 'images'}"
            )
        names.append(stem)
    return names


def _with_split(
    name: str, kind: str, pairs: Pairs, splits: dict[str, str], rule: str, root: Path
) -> TaskLayout:
    keys: dict[str, Path] = {}
    for key, _, image, _ in pairs:
        if key in keys:
            raise IngestError(f"{image}: same stem as {keys[key]}; sample keys must be unique within a task")
        keys[key] = image
    samples = [
        TaskSample(
            key, part, image.relative_to(root).as_posix(), mask.relative_to(root).as_posix(), splits[key]
        )
        for key, part, image, mask in pairs
    ]
    return TaskLayout(name, kind, rule, sorted(samples, key=lambda s: s.key))


def _images_masks(name: str) -> Callable[[Path], TaskLayout]:
    """Kvasir-SEG, CVC-ColonDB, ETIS-LaribPolypDB, CVC-300, ImageCLEFmed polyp: DIR/images/, DIR/masks/."""

    def read(root: Path) -> TaskLayout:
        pairs = _pair(root, "images", "masks")
        return _with_split(name, "polyp", pairs, hash_split([p[0] for p in pairs]), HASH_SPLIT, root)

    return read


def _cvc_clinicdb(root: Path) -> TaskLayout:
    """DIR/Original/ and DIR/Ground Truth/, TIFF as published (or the PNG re-release: same names, .png)."""
    if not (root / "Original").is_dir():
        variants = [v for v in ("PNG", "TIF") if (root / v / "Original").is_dir()]
        if variants:
            raise IngestError(
                f"{root}/Original: not found; this download holds {' and '.join(variants)}/: pass {root / variants[0]}"
            )
    pairs = _pair(root, "Original", "Ground Truth")
    return _with_split("cvc-clinicdb", "polyp", pairs, hash_split([p[0] for p in pairs]), HASH_SPLIT, root)


def _kvasir_instrument(root: Path) -> TaskLayout:
    pairs = _pair(root, "images", "masks")
    known = {p[0] for p in pairs}
    train = _read_split_list(root / "train.txt", known)
    test = _read_split_list(root / "test.txt", known)
    both = set(train) & set(test)
    if both:
        raise IngestError(
            f"{root}/test.txt: {len(both)} image(s) also in train.txt, e.g. {sorted(both)[0]!r}"
        )
    unlisted = known - set(train) - set(test)
    if unlisted:
        raise IngestError(
            f"{len(unlisted)} image(s) in {root}/images are in neither train.txt nor test.txt, e.g. {sorted(unlisted)[0]!r}"
        )
    splits = {**dict.fromkeys(train, "train"), **dict.fromkeys(test, "test")}
    return _with_split("kvasir-instrument", "instrument", pairs, splits, OFFICIAL_SPLIT, root)


def _polypgen(root: Path) -> TaskLayout:
    """DIR/data_C1 … data_C6 with images_Cn/ and masks_Cn/ (masks named `<stem>_mask`); and, where present,
    DIR/sequenceData/positive/<seq>/images_<seq>/ and masks_<seq>/ (together the 3,762 annotated frames)."""
    pairs: Pairs = []
    for n in range(1, 7):
        centre = f"data_C{n}"
        if (root / centre).is_dir():
            pairs += _pair(
                root, f"{centre}/images_C{n}", f"{centre}/masks_C{n}", mask_suffix="_mask", part=centre
            )
    if not pairs:
        raise IngestError(f"{root}: no PolypGen2021 layout here: expected {root}/data_C1/ … {root}/data_C6/")
    positive = root / "sequenceData" / "positive"
    if positive.is_dir():
        for seq in sorted(p.name for p in positive.iterdir() if p.is_dir() and not p.name.startswith(".")):
            base = f"sequenceData/positive/{seq}"
            pairs += _pair(
                root, f"{base}/images_{seq}", f"{base}/masks_{seq}", mask_suffix="_mask", part=base
            )
    return _with_split("polypgen", "polyp", pairs, hash_split([p[0] for p in pairs]), HASH_SPLIT, root)


TASK_LAYOUTS: dict[str, Callable[[Path], TaskLayout]] = {
    "kvasir-instrument": _kvasir_instrument,
    "kvasir-seg": _images_masks("kvasir-seg"),
    "imageclef-polyp": _images_masks("imageclef-polyp"),
    "etis": _images_masks("etis"),
    "polypgen": _polypgen,
    "cvc-300": _images_masks("cvc-300"),
    "cvc-clinicdb": _cvc_clinicdb,
    "cvc-colondb": _images_masks("cvc-colondb"),
}
assert tuple(TASK_LAYOUTS) == TASK_NAMES


def discover_task(name: str, root: str | Path) -> TaskLayout:
    if name not in TASK_LAYOUTS:
        raise IngestError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    root = require_dir(Path(root), f"the {name} download").resolve()
    return TASK_LAYOUTS[name](root)
