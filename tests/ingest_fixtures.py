"""Fixtures of the ingest tests: small trees in each of the eleven published layouts (3 pool sources + 8
tasks), written with PIL, and helpers that run `delbench ingest` on them in this process.

Every tree holds a few tiny real image files (JPEG, PNG or TIFF as the publisher ships them), masks where the
set has them, and one corrupt file: an image cut short, which PIL refuses to decode. Builders return what an
ingest must find, so tests compare against it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from delbench.cli import main

RES = "16,32"  # stored resolutions; 32 is the micro test tier's
IMAGE_SIZE = (40, 30)  # width, height: not square, so the centre crop matters


def _pixels(name: str, size: tuple[int, int]) -> np.ndarray:
    """A deterministic smooth colour image seeded by `name` (JPEG-friendly, unlike white noise)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little"))
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    ramp = rng.uniform(-2, 2, (2, 3))
    img = base + yy[..., None] * ramp[0] + xx[..., None] * ramp[1]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(path.name, size)).save(path)  # format from the suffix: JPEG, PNG, TIFF
    return path


def write_mask(path: Path, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    """White ellipse on black, centred: it survives the centre crop at any resolution."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("L", size, 0)
    w, h = size
    ImageDraw.Draw(mask).ellipse((w * 0.3, h * 0.25, w * 0.7, h * 0.75), fill=255)
    mask.save(path)
    return path


def write_truncated(path: Path, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    """A real image in the suffix's format, cut to half its bytes: PIL refuses to decode it."""
    write_image(path, size)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@dataclass
class PoolTree:
    root: Path
    source: str
    ids: list[str]  # readable samples, as the manifest must list them
    corrupt: Path
    videos: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (video, frame) where parsed
    labels: dict[str, str] = field(default_factory=dict)  # id -> class folder, for labelled files


def make_pool_tree(source: str, root: Path) -> PoolTree:
    files: list[str] = []
    if source == "hyper-kvasir":
        files = [
            "labeled-images/lower-gi-tract/pathological-findings/polyps/0a1b2c3d-polyp.jpg",
            "labeled-images/lower-gi-tract/pathological-findings/polyps/9f8e7d6c-polyp.jpg",
            "labeled-images/upper-gi-tract/anatomical-landmarks/z-line/5e6f7a8b-zline.jpg",
            "unlabeled-images/images/00a1b2c3-d4e5.jpg",
            "unlabeled-images/images/ffee0011-2233.jpg",
        ]
        (root / "labeled-images").mkdir(parents=True)
        (root / "labeled-images" / "image-labels.csv").write_text("Video file,Organ,Finding,Classification\n")
        corrupt = "unlabeled-images/images/deadbeef-cut.jpg"
    elif source == "kvasir-capsule":
        files = [
            "labelled_images/Polyp/0728084c8da942d9_22803.jpg",
            "labelled_images/Normal clean mucosa/04a78ef00c5245e0_10238.jpg",
            "labelled_images/Normal clean mucosa/04a78ef00c5245e0_10239.jpg",
            "unlabelled_images/part-01/3c8d5f0f1a2b4c6d_00017.jpg",
        ]
        corrupt = "labelled_images/Ulcer/1e3c1a9b7d2f4e5a_00421.jpg"
    elif source == "gastrovision":
        files = [
            "Accessory tools/0b6c2a3e.jpg",
            "Barrett's esophagus/7d1f9c2b.jpg",
            "Colon polyps/1a2b3c4d.jpg",
            "Colon polyps/5e6f7a8b.jpg",
        ]
        corrupt = "Colon polyps/cut-short.jpg"
    else:
        raise ValueError(source)
    for rel in files:
        write_image(root / rel)
    write_truncated(root / corrupt)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # OS clutter the walker must skip
    tree = PoolTree(
        root,
        source,
        sorted(f"{source}/{Path(rel).with_suffix('').as_posix()}" for rel in files),
        root / corrupt,
    )
    for rel in files:
        if not rel.startswith(("unlabeled-images/", "unlabelled_images/")):
            tree.labels[f"{source}/{Path(rel).with_suffix('').as_posix()}"] = Path(rel).parent.name
    if source == "kvasir-capsule":
        for sample_id in tree.ids:
            video, frame = Path(sample_id).name.split("_")
            tree.videos[sample_id] = (f"kvasir-capsule/{video}", int(frame))
    return tree


@dataclass
class TaskTree:
    root: Path
    name: str
    n_readable: int
    corrupt: Path
    test_keys: set[str] | None = None  # the official test split, where the set has one


def _pairs(
    root: Path,
    image_dir: str,
    mask_dir: str,
    stems: list[str],
    image_ext: str,
    mask_ext: str,
    mask_suffix: str = "",
) -> None:
    for i, stem in enumerate(stems):
        size = IMAGE_SIZE if i % 2 == 0 else (36, 44)  # portrait and landscape frames
        write_image(root / image_dir / f"{stem}{image_ext}", size)
        write_mask(root / mask_dir / f"{stem}{mask_suffix}{mask_ext}", size)


# name -> (image folder, mask folder, image extension, mask extension) for the images/masks layouts
_SIMPLE = {
    "kvasir-seg": ("images", "masks", ".jpg", ".jpg"),  # JPEG masks: the threshold has real work to do
    "cvc-colondb": ("images", "masks", ".png", ".png"),
    "etis": ("images", "masks", ".png", ".png"),
    "cvc-300": ("images", "masks", ".png", ".png"),
    "imageclef-polyp": ("images", "masks", ".jpg", ".png"),
    "cvc-clinicdb": ("Original", "Ground Truth", ".tif", ".tif"),
    "cvc-clinicdb-png": ("Original", "Ground Truth", ".png", ".png"),
}


def make_task_tree(name: str, root: Path) -> TaskTree:
    """`name` is a task name, or `cvc-clinicdb-png` for CVC-ClinicDB's PNG release."""
    if name in _SIMPLE:
        image_dir, mask_dir, image_ext, mask_ext = _SIMPLE[name]
        stems = (
            [str(i) for i in range(1, 6)] if "clinicdb" in name else [f"cju{i}x{i * 7}y" for i in range(5)]
        )
        _pairs(root, image_dir, mask_dir, stems, image_ext, mask_ext)
        corrupt = write_truncated(root / image_dir / f"99{image_ext}")
        write_mask(root / mask_dir / f"99{mask_ext}")
        return TaskTree(root, name, len(stems), corrupt)
    if name == "kvasir-instrument":
        stems = [f"ckcu8ty6z0000{i}3b5yzfaezbs5" for i in range(6)]
        _pairs(root, "images", "masks", stems, ".jpg", ".png")
        corrupt = write_truncated(root / "images" / "ckd0cut.jpg")
        write_mask(root / "masks" / "ckd0cut.png")
        (root / "train.txt").write_text("\n".join([*stems[:4], "ckd0cut"]) + "\n")
        (root / "test.txt").write_text("\n".join(stems[4:]) + "\n")
        return TaskTree(root, name, len(stems), corrupt, test_keys=set(stems[4:]))
    if name == "polypgen":
        count = 0
        for centre in (1, 2, 3):
            stems = [f"C{centre}_{100 + i}OLCV1_100H{i:04d}" for i in range(2)]
            _pairs(
                root,
                f"data_C{centre}/images_C{centre}",
                f"data_C{centre}/masks_C{centre}",
                stems,
                ".jpg",
                ".jpg",
                "_mask",
            )
            count += len(stems)
        seq = "sequenceData/positive/seq1"
        _pairs(
            root,
            f"{seq}/images_seq1",
            f"{seq}/masks_seq1",
            ["seq1_0001", "seq1_0002"],
            ".jpg",
            ".jpg",
            "_mask",
        )
        count += 2
        corrupt = write_truncated(root / "data_C2/images_C2/C2_cut.jpg")
        write_mask(root / "data_C2/masks_C2/C2_cut_mask.jpg")
        return TaskTree(root, name, count, corrupt)
    raise ValueError(name)


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusing an argument
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def ingest_pool(capsys, tree, pool: Path, *extra) -> tuple[int, str, str]:
    argv = ["ingest", "pool", "--source", tree.source, tree.root, "--into", pool, "--resolutions", RES]
    return run(capsys, *argv, "--workers", "1", "--no-progress", *extra)


def ingest_task(capsys, name: str, root: Path, tasks: Path, *extra) -> tuple[int, str, str]:
    argv = [
        "ingest",
        "task",
        name,
        root,
        "--into",
        tasks,
        "--resolutions",
        RES,
        "--workers",
        "1",
        "--no-progress",
    ]
    return run(capsys, *argv, *extra)
