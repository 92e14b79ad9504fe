"""The synthetic DataDEL pool and its eight downstream tasks (DESIGN.md §4).

No real medical data can ship with DELBench, so this generates a deterministic stand-in with the properties
that make selection matter: "videos" of consecutive near-duplicate frames (a camera drifting over a
procedural tissue texture), polyps and instruments in some frames, and a known share of disruptive frames
(blurred, dark, over-exposed, bubbles). The eight tasks are binary segmentations with exact masks, drawn
from their own random streams (never from pool frames), with different colour profiles and object sizes.

Same seed, same bytes: every random draw comes from a generator seeded by (seed, purpose, index).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from evaluator.store import TASK_NAMES, PoolWriter, TaskSplit, write_task

FRAMES_PER_VIDEO = 24
DISRUPTIVE_SHARE = 0.15
DISRUPTIONS = ("blur", "dark", "overexposed", "bubbles")
# Three stand-in sources, like DataDEL's Hyper-Kvasir, Kvasir-Capsule and Gastrovision (share of videos).
SOURCES = (("synth-hyperkvasir", 0.55), ("synth-capsule", 0.30), ("synth-gastrovision", 0.15))


@dataclass(frozen=True)
class TaskProfile:
    kind: str  # "polyp" or "instrument"
    n_train: int
    n_test: int
    tint: tuple[float, float, float]  # multiplies the tissue colour: the dataset's "camera"
    object_scale: tuple[float, float]  # object radius as a fraction of the image side
    max_objects: int


# Sizes keep the real sets' order (PolypGen and Kvasir-SEG largest, CVC-300 smallest) at a CPU-friendly scale.
TASK_PROFILES: dict[str, TaskProfile] = {
    "kvasir-instrument": TaskProfile("instrument", 64, 48, (1.00, 0.95, 0.95), (0.06, 0.10), 2),
    "kvasir-seg": TaskProfile("polyp", 80, 48, (1.00, 0.90, 0.90), (0.12, 0.25), 1),
    "imageclef-polyp": TaskProfile("polyp", 64, 48, (1.05, 0.85, 0.80), (0.08, 0.22), 2),
    "etis": TaskProfile("polyp", 40, 48, (0.95, 0.95, 1.05), (0.05, 0.12), 1),
    "polypgen": TaskProfile("polyp", 96, 48, (1.00, 1.00, 0.95), (0.07, 0.24), 2),
    "cvc-300": TaskProfile("polyp", 32, 48, (1.10, 0.80, 0.75), (0.10, 0.20), 1),
    "cvc-clinicdb": TaskProfile("polyp", 64, 48, (1.05, 0.90, 0.85), (0.08, 0.20), 2),
    "cvc-colondb": TaskProfile("polyp", 48, 48, (0.90, 0.85, 0.95), (0.07, 0.18), 1),
}
assert tuple(TASK_PROFILES) == TASK_NAMES


def _rng(seed: int, purpose: str, index: int = 0) -> np.random.Generator:
    tag = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, tag, index])


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a random `cells`² grid upsampled bicubically to `size`²."""
    grid = rng.random((cells, cells)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(up), 0.0, 1.0)


def tissue_texture(rng: np.random.Generator, size: int, tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A float [size, size, 3] RGB image in [0, 1]: mucosa with folds and vessels."""
    base = np.array([0.80, 0.42, 0.36]) * rng.uniform(0.85, 1.1, 3) * np.array(tint)
    folds = 0.6 * _smooth_noise(rng, size, 4) + 0.4 * _smooth_noise(rng, size, 9)
    grain = _smooth_noise(rng, size, max(8, size // 4))
    img = base[None, None, :] * (0.55 + 0.6 * folds[..., None]) * (0.9 + 0.2 * grain[..., None])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for _ in range(rng.integers(2, 6)):  # vessels: thin dark-red sinusoidal curves
        a, f, ph, c = rng.uniform(0.05, 0.2), rng.uniform(1, 4), rng.uniform(0, 6.28), rng.uniform(0.1, 0.9)
        if rng.random() < 0.5:
            dist = np.abs(yy - (c + a * np.sin(2 * np.pi * f * xx + ph)))
        else:
            dist = np.abs(xx - (c + a * np.sin(2 * np.pi * f * yy + ph)))
        vessel = np.exp(-((dist * size / rng.uniform(0.6, 1.5)) ** 2))[..., None]
        img = img * (1 - 0.45 * vessel) + vessel * 0.45 * np.array([0.45, 0.08, 0.10])
    return np.clip(img, 0, 1)


def draw_polyp(img: np.ndarray, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Raise a shaded elliptical polyp out of the tissue in `img`, in place; return its boolean mask.

    The polyp keeps the mucosa's own colour and texture: it shows only through its dome shading, a specular
    spot and a faint rim, as in real colonoscopy, so telling it from tissue takes shape, not colour.
    """
    size = img.shape[0]
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    ry, rx = radius * size * rng.uniform(0.75, 1.25, 2)
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
    r2 = u**2 + v**2
    mask = r2 <= 1.0
    dome = np.sqrt(np.clip(1 - r2, 0, 1))  # height of a hemisphere
    light_dir = rng.uniform(-1, 1, 2)
    light = 0.85 + 0.35 * dome - 0.25 * (light_dir[0] * u + light_dir[1] * v) * dome
    rim = np.exp(-(((np.sqrt(r2) - 1.0) * min(rx, ry) / 0.8) ** 2))  # the shadowed fold around the base
    specular = np.clip(dome - 0.85, 0, 1) * 4 * (rng.random() < 0.7)
    shaded = (
        img * np.where(mask, light, 1.0)[..., None] * (1 - 0.3 * rim)[..., None] + specular[..., None] * 0.8
    )
    img[...] = np.clip(shaded, 0, 1)
    return mask


def draw_instrument(img: np.ndarray, rng: np.random.Generator, width: float) -> np.ndarray:
    """Paint a metallic shaft entering from the border; return its boolean mask."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    edge_point = rng.uniform(0, 1)
    side = rng.integers(4)
    start = [(edge_point, 0.0), (edge_point, 1.0), (0.0, edge_point), (1.0, edge_point)][side]
    tip = rng.uniform(0.3, 0.7, 2)
    d = tip - np.array(start)
    length = np.linalg.norm(d) + 1e-6
    d = d / length
    py, px = yy - start[0], xx - start[1]
    along = py * d[0] + px * d[1]
    across = np.abs(-py * d[1] + px * d[0])
    mask = (along >= 0) & (along <= length) & (across <= width)
    shade = 0.55 + 0.4 * (1 - across / width) ** 2
    metal = np.stack([shade * 0.78, shade * 0.80, shade * 0.84], -1)
    img[mask] = metal[mask]
    return mask


def disrupt(frame: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """One of DataDEL's disruptive frame types applied to a uint8 [H, W, 3] frame."""
    size = frame.shape[0]
    if kind == "blur":
        return np.asarray(
            Image.fromarray(frame).filter(ImageFilter.GaussianBlur(radius=size / rng.uniform(12, 20)))
        )
    f = frame.astype(np.float32) / 255
    if kind == "dark":
        f = f * rng.uniform(0.08, 0.2)
    elif kind == "overexposed":
        w = rng.uniform(0.6, 0.85)
        f = f * (1 - w) + w
    elif kind == "bubbles":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        for _ in range(rng.integers(6, 16)):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(0.03, 0.12) * size
            dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
            rim = np.exp(-(((dist - r) / 1.2) ** 2))[..., None]
            inside = (dist < r)[..., None]
            f = np.where(inside, f * 0.8 + 0.15, f)
            f = f * (1 - 0.8 * rim) + 0.8 * rim
    return (np.clip(f, 0, 1) * 255).astype(np.uint8)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def _vignette(size: int) -> np.ndarray:
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size - 0.5
    return (np.sqrt(yy**2 + xx**2) < 0.5).astype(np.float32)[..., None]


def render_video(seed: int, video_index: int, source: str, n_frames: int, resolution: int):
    """Yield (frame uint8 [res, res, 3], disruption or None) for one synthetic video."""
    rng = _rng(seed, "video", video_index)
    canvas_size = 2 * resolution
    canvas = tissue_texture(rng, canvas_size)
    if rng.random() < 0.4:
        for _ in range(rng.integers(1, 3)):
            draw_polyp(canvas, rng, rng.uniform(0.05, 0.12))
    if rng.random() < 0.15:
        draw_instrument(canvas, rng, rng.uniform(0.02, 0.05))
    canvas8 = _to_uint8(canvas)
    pos = rng.uniform(0, canvas_size / 2, 2)
    velocity = rng.normal(0, canvas_size / 80, 2)
    window = resolution * rng.uniform(0.9, 1.0)
    vignette = _vignette(resolution) if source == "synth-capsule" else None
    for _ in range(n_frames):
        velocity = 0.8 * velocity + rng.normal(0, canvas_size / 200, 2)
        pos = np.clip(pos + velocity, 0, canvas_size - window - 1)
        y, x = pos
        crop = Image.fromarray(canvas8).resize(
            (resolution, resolution), Image.BILINEAR, box=(x, y, x + window, y + window)
        )
        frame = np.asarray(crop).astype(np.float32) * rng.uniform(0.95, 1.05) + rng.normal(
            0, 2.0, (resolution, resolution, 3)
        )
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        disruption = None
        if rng.random() < DISRUPTIVE_SHARE:
            disruption = DISRUPTIONS[rng.integers(len(DISRUPTIONS))]
            frame = disrupt(frame, rng, disruption)
        if vignette is not None:
            frame = (frame * vignette).astype(np.uint8)
        yield frame, disruption


def render_task_sample(
    seed: int, task_name: str, index: int, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 [res, res, 3], mask uint8 [res, res]) of a synthetic downstream task."""
    profile = TASK_PROFILES[task_name]
    rng = _rng(seed, f"task/{task_name}", index)
    img = tissue_texture(rng, resolution, profile.tint)
    mask = np.zeros((resolution, resolution), dtype=bool)
    for _ in range(rng.integers(1, profile.max_objects + 1)):
        size = rng.uniform(*profile.object_scale)
        if profile.kind == "instrument":
            mask |= draw_instrument(img, rng, size)
        else:
            mask |= draw_polyp(img, rng, size)
    noisy = img * 255 + rng.normal(0, 2.0, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def generate(
    out: str | Path,
    *,
    seed: int = 0,
    size: int = 4800,
    resolution: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the synthetic pool to `out` and its eight tasks to `out/tasks`; return a summary."""
    out = Path(out)
    n_videos = -(-size // FRAMES_PER_VIDEO)
    video_sources = _assign_sources(seed, n_videos)
    truth = []
    writer = PoolWriter(out, size, [resolution], extra_meta={"generator": "delbench-synth/1", "seed": seed})
    with writer:
        index = 0
        for v in range(n_videos):
            source = video_sources[v]
            n_frames = min(FRAMES_PER_VIDEO, size - index)
            for f, (frame, disruption) in enumerate(render_video(seed, v, source, n_frames, resolution)):
                video = f"{source}/v{v:05d}"
                record = {
                    "id": f"{video}/f{f:03d}",
                    "source": source,
                    "video": video,
                    "frame": f,
                    "sha256": hashlib.sha256(frame.tobytes()).hexdigest(),
                }
                writer.put(index, record, {resolution: frame})
                truth.append({"id": record["id"], "disruption": disruption})
                index += 1
            if progress:
                progress(index, size + sum(p.n_train + p.n_test for p in TASK_PROFILES.values()))
        # Ground truth for analysis and tests only; the manifest (the public listing) does not carry it.
        (writer.staging / "synth_truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
        writer.commit()
    for name, profile in TASK_PROFILES.items():
        splits = {}
        offset = 0
        for split_name, n in (("train", profile.n_train), ("test", profile.n_test)):
            samples = [render_task_sample(seed, name, offset + i, resolution) for i in range(n)]
            offset += n
            splits[split_name] = TaskSplit(
                np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])
            )
            index += n
            if progress:
                progress(index, size + sum(p.n_train + p.n_test for p in TASK_PROFILES.values()))
        write_task(out / "tasks", name, profile.kind, {resolution: splits}, {"synthetic": True, "seed": seed})
    n_disrupted = sum(t["disruption"] is not None for t in truth)
    return {
        "pool": str(out),
        "size": size,
        "videos": n_videos,
        "disruptive": n_disrupted,
        "tasks": list(TASK_PROFILES),
    }


def disruptive_frames(pool_dir: Path, ids: list[str]) -> np.ndarray:
    """Boolean [len(ids)]: which frames of a pool made by `generate` are disruptive (blurred, dark, over-exposed,
    bubbles), read from the pool's ground truth. For analysis only: participants see the manifest, not this."""
    path = Path(pool_dir) / "synth_truth.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: only a pool made by `delbench synth` has ground truth")
    truth = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        truth[record["id"]] = record["disruption"] is not None
    return np.array([truth[i] for i in ids])


def _assign_sources(seed: int, n_videos: int) -> list[str]:
    rng = _rng(seed, "sources")
    names = [s for s, _ in SOURCES]
    return list(rng.choice(names, size=n_videos, p=[w for _, w in SOURCES]))
