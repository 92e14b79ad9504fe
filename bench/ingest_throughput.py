"""Throughput of `delbench ingest pool`: images per second with 1 and N worker processes.

Generates a Gastrovision-layout tree of endoscopy-sized JPEGs (720x576, a smooth tissue-like colour field
with grain, ~60-90 KB each like the real frames) in a temporary folder, then ingests it at the default
resolutions (every tier's: 64 and 224). The reference row is the naive loop the ingest replaces: full-size
PIL decode, crop and resize in one process. Besides wall-clock images/s it prints CPU milliseconds per image
(this process and its workers, user + system), which does not depend on what else the machine is running:
on a shared machine the wall-clock figure is whatever share of the cores the scheduler grants. Run:

    .venv/bin/python bench/ingest_throughput.py [--images 400] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from evaluator.ingest.decoding import default_workers
from evaluator.ingest.imaging import square_box
from evaluator.ingest.pool import ingest_pool
from evaluator.ingest.resolutions import tier_resolutions

WIDTH, HEIGHT = 720, 576
PAPER_POOL_FILES = 8_000 + 110_079 + 47_238  # Gastrovision + Hyper-Kvasir + Kvasir-Capsule frames


def write_tree(root: Path, n_images: int, seed: int = 0) -> int:
    """n JPEGs in 8 class folders; returns the total bytes written."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n_images):
        coarse = rng.uniform(0, 1, (9, 12, 3)).astype(np.float32)
        field = np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize((WIDTH, HEIGHT), Image.BICUBIC)
        )
        tissue = field.astype(np.float32) * np.array([0.9, 0.5, 0.45]) + 40
        tissue += rng.normal(0, 6, (HEIGHT, WIDTH, 1))  # sensor grain: keeps file sizes realistic
        path = root / f"class-{i % 8}" / f"frame-{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(tissue, 0, 255).astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def naive_loop(root: Path, resolutions: list[int]) -> int:
    """Full-size decode + crop + resize in this process: what the ingest is compared against."""
    files = sorted(root.rglob("*.jpg"))
    for path in files:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        box = square_box(*rgb.size)
        for res in resolutions:
            np.asarray(rgb.resize((res, res), Image.Resampling.BILINEAR, box=box))
    return len(files)


def measured(run) -> tuple[float, float]:
    """(images per wall-clock second, CPU milliseconds per image) of `run()`, which returns an image count."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    n = run()
    return n / (time.perf_counter() - wall), 1000 * (cpu_seconds() - cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", default=f"1,{default_workers()}", help="comma-separated worker counts")
    args = parser.parse_args()
    resolutions = tier_resolutions()
    with tempfile.TemporaryDirectory(prefix="delbench-ingest-bench-") as tmp:
        tree = Path(tmp) / "gastrovision"
        size = write_tree(tree, args.images)
        print(
            f"{args.images} JPEGs {WIDTH}x{HEIGHT}, {size / args.images / 1024:.0f} KB each; resolutions {resolutions}"
        )
        print(f"{default_workers()} CPU core(s) available")
        print(f"{'how':<34} {'images/s':>9} {'CPU ms/image':>13} {'paper pool (165,317 files)':>27}")
        rows = [("reference: naive loop, 1 process", *measured(lambda: naive_loop(tree, resolutions)))]
        for workers in sorted({int(w) for w in args.workers.split(",")}):

            def ingest(workers=workers) -> int:
                pool = Path(tmp) / f"pool-{workers}"
                report = ingest_pool("gastrovision", tree, pool, workers=workers, progress=False)
                assert report.added == args.images, report.skipped
                return report.added

            rows.append((f"delbench ingest pool, {workers} worker(s)", *measured(ingest)))
        for label, rate, cpu_ms in rows:
            print(f"{label:<34} {rate:9.0f} {cpu_ms:13.2f} {PAPER_POOL_FILES / rate / 60:22.0f} min")


if __name__ == "__main__":
    main()
