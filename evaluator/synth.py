"""The synthetic DataDEL pool and its eight downstream tasks.

No real medical data can ship with DELBench, so this generates a deterministic stand-in with the properties
that make selection matter. Two versions exist; a pool records its own in `pool.json` (`generator`).

- **Version 2 (the default)** is structured like the real pool, where redundancy is uneven: single shots
  (like Gastrovision's 8,000 images), videos of widely varying length (like Hyper-Kvasir's 374), and a few
  long, slowly drifting capsule videos (like Kvasir-Capsule's 117) that hold long stretches of nearly
  identical frames; exact and near (+-1 grey level) copies within and across sources; disruptive frames
  (blur, darkness, over-exposure, bubbles) and invalid ones (black, noise) concentrated in the videos; and
  the content the downstream tasks segment (polyps, instruments) rare and unevenly spread over the videos.
  A uniform draw therefore over-samples the long redundant videos and under-samples what matters.
- **Version 1** is uniform: videos of 24 near-duplicate frames, 15 % disruptive frames everywhere. Kept so
  that its tables stay reproducible (`delbench synth --version 1`).

The ground truth (which frame is a copy of which, which are disruptive, what each frame shows) is written
to `synth_truth.jsonl` for analysis and tests; the public manifest does not carry it. The eight tasks are
binary segmentations with exact masks, drawn from their own random streams (never from pool frames), the
same in both versions.

Same seed, same bytes: every random draw comes from a generator seeded by (seed, purpose, index).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from evaluator.store import TASK_NAMES, PoolWriter, TaskSplit, write_task

VERSIONS = (1, 2)
DEFAULT_VERSION = 2
DISRUPTIONS = ("blur", "dark", "overexposed", "bubbles")
INVALID = ("black", "noise")  # frames with no tissue at all: a blank screen, a transmission glitch
# Version 1: uniform videos of 24 frames, 15 % disruptive, sources by share of videos.
FRAMES_PER_VIDEO = 24
DISRUPTIVE_SHARE = 0.15
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
    """One of DataDEL's disruptive frame types (or an invalid frame, `INVALID`) made of a uint8 [H, W, 3] frame."""
    size = frame.shape[0]
    if kind == "black":  # a blank screen: sensor noise of a few grey levels only
        return rng.integers(0, 4, frame.shape).astype(np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, frame.shape).astype(np.uint8)
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


# ------------------------------------------------------------------------------------- version 2


@dataclass(frozen=True)
class SourceProfile:
    """How one stand-in source of the version-2 pool looks and how its frames are spread over videos."""

    share: float  # of the pool's original (non-copy) frames
    lengths: tuple[
        str, float, float
    ]  # ("single", _, _), ("lognormal", median, sigma), ("uniform", lo, hi) * N
    drift: float  # camera speed, in canvas pixels per frame as a fraction of the canvas side
    polyp_videos: float  # share of videos whose scene holds a polyp
    instrument_videos: float
    disruptive: tuple[float, float]  # Beta(a, b): each video's share of disruptive frames
    invalid: float  # share of frames that are black or noise (no tissue at all)
    tint: tuple[float, float, float]
    vignette: bool


# Modelled on DataDEL's three sources: Gastrovision (8,000 single shots, a third of them with findings),
# Hyper-Kvasir (374 videos of very different lengths; the paper cites over 90 % of its video frames as
# disruptive or invalid) and Kvasir-Capsule (117 capsule videos with long stretches of nearly identical frames).
SOURCES_V2: dict[str, SourceProfile] = {
    "synth-gastrovision": SourceProfile(
        0.10, ("single", 0, 0), 0.0, 0.30, 0.08, (1.0, 19.0), 0.0, (1.0, 1.0, 1.0), False
    ),
    "synth-hyperkvasir": SourceProfile(
        0.40, ("lognormal", 20, 1.0), 1 / 60, 0.30, 0.12, (6.0, 4.0), 0.04, (1.0, 1.0, 1.0), False
    ),
    "synth-capsule": SourceProfile(
        0.45, ("uniform", 0.05, 0.12), 1 / 1500, 0.20, 0.0, (2.0, 6.0), 0.01, (1.05, 0.95, 0.70), True
    ),
}
COPY_SHARE = 0.05  # of the whole pool: planted copies of other frames
NEAR_COPY_SHARE = 0.5  # of the copies: +-1 grey level on every pixel rather than byte-identical
CROSS_SOURCE_SHARE = 0.4  # of the copies: placed in another source than their original's
PATHOLOGY_MIN_PIXELS = 0.005  # a frame "shows" a polyp or instrument covering at least this share of it


@dataclass
class _Video:
    source: str
    key: int  # seeds its rendering; copies name their original by (key, frame)
    n_frames: int  # originals
    copies: list = field(default_factory=list)  # (original's video key, its frame, "exact" | "near")
    name: str = ""

    @property
    def single(self) -> bool:
        return SOURCES_V2[self.source].lengths[0] == "single"


def _video_lengths(
    rng: np.random.Generator, profile: SourceProfile, budget: int, pool_size: int
) -> list[int]:
    kind, a, b = profile.lengths
    lengths: list[int] = []
    while sum(lengths) < budget:
        if kind == "single":
            n = 1
        elif kind == "lognormal":
            n = int(np.clip(round(rng.lognormal(np.log(a), b)), 3, max(3, 0.08 * pool_size)))
        else:
            n = max(8, round(rng.uniform(a, b) * pool_size))
        lengths.append(min(n, budget - sum(lengths)))
    return lengths


def plan_pool_v2(seed: int, size: int) -> list[_Video]:
    """The version-2 layout, in manifest order: every video with its original frames and the copies in it."""
    rng = _rng(seed, "v2/layout")
    n_copies = round(COPY_SHARE * size) if size >= 40 else 0
    originals = size - n_copies
    names = list(SOURCES_V2)
    total_share = sum(p.share for p in SOURCES_V2.values())
    budgets = [round(SOURCES_V2[n].share / total_share * originals) for n in names]
    budgets[-1] = originals - sum(budgets[:-1])
    videos: list[_Video] = []
    for source, budget in zip(names, budgets, strict=True):
        for n in _video_lengths(rng, SOURCES_V2[source], budget, size):
            videos.append(_Video(source, len(videos), n))
    frames = [(video.key, f) for video in videos for f in range(video.n_frames)]
    for c in range(n_copies):
        key, f = frames[rng.integers(len(frames))]
        kind = "near" if c < NEAR_COPY_SHARE * n_copies else "exact"
        target = here = videos[key].source
        if rng.random() < CROSS_SOURCE_SHARE:
            target = names[(names.index(here) + 1 + rng.integers(len(names) - 1)) % len(names)]
        if SOURCES_V2[target].lengths[0] == "single":  # a copy among single shots is a shot of its own
            videos.append(_Video(target, len(videos), 0, [(key, f, kind)]))
        else:
            candidates = [v for v in videos if v.source == target and v.n_frames]
            candidates[rng.integers(len(candidates))].copies.append((key, f, kind))
    ordered = []
    for source in names:  # single shots (copies among them) in a random order, videos as planned
        members = [v for v in videos if v.source == source]
        if members and members[0].single:
            members = [members[i] for i in rng.permutation(len(members))]
        for n, video in enumerate(members):
            video.name = f"{source}/{'i' if video.single else 'v'}{n:05d}"
        ordered += members
    return ordered


def render_video_v2(seed: int, video_index: int, source: str, n_frames: int, resolution: int):
    """Yield (frame uint8 [res, res, 3], disruption or None, what it shows) for one version-2 video."""
    profile = SOURCES_V2[source]
    rng = _rng(seed, "v2/video", video_index)
    canvas_size = 2 * resolution
    canvas = tissue_texture(rng, canvas_size, profile.tint)
    shows = {"polyp": np.zeros((canvas_size, canvas_size), bool), "instrument": None}
    if rng.random() < profile.polyp_videos:
        for _ in range(rng.integers(1, 3)):
            shows["polyp"] |= draw_polyp(canvas, rng, rng.uniform(0.04, 0.10))
    if rng.random() < profile.instrument_videos:
        shows["instrument"] = draw_instrument(canvas, rng, rng.uniform(0.02, 0.05))
    masks = {
        k: Image.fromarray(m.astype(np.uint8) * 255) for k, m in shows.items() if m is not None and m.any()
    }
    canvas8 = Image.fromarray(_to_uint8(canvas))
    window = resolution * rng.uniform(0.9, 1.0)
    pos = rng.uniform(0, canvas_size - window - 1, 2)
    step = profile.drift * canvas_size
    velocity = rng.normal(0, step, 2)
    disruptive_share = rng.beta(*profile.disruptive)
    vignette = _vignette(resolution) if profile.vignette else None
    for _ in range(n_frames):
        if step > 0:
            velocity = 0.9 * velocity + rng.normal(0, step / 2, 2)
            pos = np.clip(pos + velocity, 0, canvas_size - window - 1)
        else:  # a single shot: a view anywhere on the scene
            pos = rng.uniform(0, canvas_size - window - 1, 2)
        y, x = pos
        box = (x, y, x + window, y + window)
        crop = canvas8.resize((resolution, resolution), Image.BILINEAR, box=box)
        visible = [
            k
            for k, m in masks.items()
            if np.mean(np.asarray(m.resize((resolution, resolution), Image.BILINEAR, box=box)) > 127)
            >= PATHOLOGY_MIN_PIXELS
        ]
        frame = np.asarray(crop).astype(np.float32) * rng.uniform(0.95, 1.05) + rng.normal(
            0, 2.0, (resolution, resolution, 3)
        )
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        disruption = None
        u = rng.random()
        if u < profile.invalid:
            disruption = INVALID[rng.integers(len(INVALID))]
            frame, visible = disrupt(frame, rng, disruption), []
        elif u < profile.invalid + (1 - profile.invalid) * disruptive_share:
            disruption = DISRUPTIONS[rng.integers(len(DISRUPTIONS))]
            frame = disrupt(frame, rng, disruption)
        if vignette is not None and disruption not in INVALID:
            frame = (frame * vignette).astype(np.uint8)
        yield frame, disruption, visible


def near_copy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame with every pixel moved one grey level up or down (down at 255, up at 0)."""
    step = np.where(rng.random(frame.shape) < 0.5, -1, 1)
    step = np.where(frame == 0, 1, np.where(frame == 255, -1, step))
    return (frame.astype(np.int16) + step).astype(np.uint8)


def _write_pool_v2(writer: PoolWriter, seed: int, resolution: int, tick: Callable[[int], None]) -> list[dict]:
    videos = plan_pool_v2(seed, writer.size)
    wanted = {(key, f) for video in videos for key, f, _ in video.copies}
    kept: dict[tuple[int, int], tuple[np.ndarray, dict]] = {}
    index, truth, copy_slots = 0, [], []
    for video in videos:
        frames = render_video_v2(seed, video.key, video.source, video.n_frames, resolution)
        for f, (frame, disruption, visible) in enumerate(frames):
            record = _record(video, f, frame)
            writer.put(index, record, {resolution: frame})
            fact = {"id": record["id"], "video": video.name, "disruption": disruption, "shows": visible}
            truth.append({**fact, "copy_of": None, "copy": None})
            if (video.key, f) in wanted:
                kept[(video.key, f)] = frame, fact
            index += 1
        for c, copy in enumerate(video.copies):  # a video's copies follow its own frames
            copy_slots.append((index, video, video.n_frames + c, copy))
            truth.append(None)
            index += 1
        tick(index)
    rng = _rng(seed, "v2/copies")
    for at, video, f, (key, of, kind) in copy_slots:
        original, fact = kept[(key, of)]
        frame = original.copy() if kind == "exact" else near_copy(original, rng)
        record = _record(video, f, frame)
        writer.put(at, record, {resolution: frame})
        truth[at] = {**fact, "id": record["id"], "video": video.name, "copy_of": fact["id"], "copy": kind}
    return truth


def _record(video: _Video, frame_index: int, frame: np.ndarray) -> dict:
    return {
        "id": video.name if video.single else f"{video.name}/f{frame_index:04d}",
        "source": video.source,
        "video": video.name,
        "frame": frame_index,
        "sha256": hashlib.sha256(frame.tobytes()).hexdigest(),
    }


# ------------------------------------------------------------------------------------- version 1


def _write_pool_v1(writer: PoolWriter, seed: int, resolution: int, tick: Callable[[int], None]) -> list[dict]:
    size = writer.size
    n_videos = -(-size // FRAMES_PER_VIDEO)
    video_sources = _assign_sources(seed, n_videos)
    truth = []
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
        tick(index)
    return truth


def _assign_sources(seed: int, n_videos: int) -> list[str]:
    rng = _rng(seed, "sources")
    names = [s for s, _ in SOURCES]
    return list(rng.choice(names, size=n_videos, p=[w for _, w in SOURCES]))


# ------------------------------------------------------------------------------------------ both


def generate(
    out: str | Path,
    *,
    seed: int = 0,
    size: int = 4800,
    resolution: int = 64,
    version: int = DEFAULT_VERSION,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the synthetic pool to `out` and its eight tasks to `out/tasks`; return a summary."""
    if version not in VERSIONS:
        raise ValueError(f"synthetic pool version {version!r} does not exist; choose from {VERSIONS}")
    out = Path(out)
    total = size + sum(p.n_train + p.n_test for p in TASK_PROFILES.values())

    def tick(done: int) -> None:
        if progress:
            progress(done, total)

    meta = {"generator": f"delbench-synth/{version}", "seed": seed}
    with PoolWriter(out, size, [resolution], extra_meta=meta) as writer:
        write_pool = _write_pool_v2 if version == 2 else _write_pool_v1
        truth = write_pool(writer, seed, resolution, tick)
        # Ground truth for analysis and tests only; the manifest (the public listing) does not carry it.
        (writer.staging / "synth_truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
        writer.commit()
    index = size
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
            tick(index)
        write_task(out / "tasks", name, profile.kind, {resolution: splits}, {"synthetic": True, "seed": seed})
    return {
        "pool": str(out),
        "version": version,
        "size": size,
        "videos": len({t.get("video", t["id"].rsplit("/", 1)[0]) for t in truth}),
        "disruptive": sum(t["disruption"] is not None for t in truth),
        "copies": sum(t.get("copy") is not None for t in truth),
        "tasks": list(TASK_PROFILES),
    }


@dataclass(frozen=True)
class PoolTruth:
    """What `generate` planted, aligned with the IDs asked for. For analysis only: participants see the
    manifest, not this."""

    disruptive: np.ndarray  # bool: blurred, dark, over-exposed, bubbles, or invalid
    invalid: np.ndarray  # bool: black or noise, no tissue at all
    original: np.ndarray  # int64: for a copy, the row of the frame it copies (in `ids`), else its own row
    shows: np.ndarray  # bool: a polyp or instrument is in view
    video: np.ndarray  # str: the video (or single shot) each frame belongs to

    @property
    def copies(self) -> np.ndarray:
        return self.original != np.arange(len(self.original))

    def copies_among(self, rows: np.ndarray) -> int:
        """How many of `rows` are redundant copies: per group of identical frames, all but one of those in
        `rows` (whichever member is the planted copy)."""
        groups = self.original[np.asarray(rows, dtype=np.int64)]
        return int(len(groups) - len(np.unique(groups)))


def pool_truth(pool_dir: Path, ids: list[str]) -> PoolTruth:
    """The ground truth of a pool made by `generate` (either version), in the order of `ids`."""
    path = Path(pool_dir) / "synth_truth.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: only a pool made by `delbench synth` has ground truth")
    truth = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        truth[record["id"]] = record
    row = {i: n for n, i in enumerate(ids)}
    records = [truth[i] for i in ids]
    return PoolTruth(
        disruptive=np.array([r["disruption"] is not None for r in records], dtype=bool),
        invalid=np.array([r["disruption"] in INVALID for r in records], dtype=bool),
        original=np.array([row.get(r.get("copy_of"), n) for n, r in enumerate(records)], dtype=np.int64),
        shows=np.array([bool(r.get("shows")) for r in records], dtype=bool),
        video=np.array([r.get("video", r["id"].rsplit("/", 1)[0]) for r in records]),
    )


def truth_selection(truth: PoolTruth, kind: str, n: int, *, seed: int = 0) -> np.ndarray:
    """Sorted rows of a selection of `n` frames made from the ground truth (analysis only).

    "oracle": the quality- and coverage-aware ceiling: no disruptive frame and no copy, spread as evenly as
    it goes over the videos (one frame of each video in a seeded order, then a second, ..., each video's
    frames taken evenly spaced in time). "disruptive only": the floor, a seeded draw among disruptive frames.
    """
    rng = np.random.default_rng([seed, 7])
    if kind == "disruptive only":
        candidates = np.flatnonzero(truth.disruptive)
        if n > len(candidates):
            raise ValueError(f"{n} frames asked, but the pool has only {len(candidates)} disruptive ones")
        return np.sort(rng.choice(candidates, n, replace=False))
    if kind != "oracle":
        raise ValueError(f"unknown truth selection {kind!r}")
    clean = np.flatnonzero(~truth.disruptive & ~truth.copies)
    if n > len(clean):
        raise ValueError(f"{n} frames asked, but the pool has only {len(clean)} clean, distinct ones")
    videos: dict[str, list[int]] = {}
    for row in clean:
        videos.setdefault(str(truth.video[row]), []).append(int(row))
    # Each video's frames in the order that spreads them over time: middle, then halves, then quarters...
    queues = [_spread_order(frames) for frames in videos.values()]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for queue in queues:
            if depth < len(queue) and len(picked) < n:
                picked.append(queue[depth])
        depth += 1
    return np.sort(np.array(picked, dtype=np.int64))


def _spread_order(frames: list[int]) -> list[int]:
    """`frames` (in time order) reordered so that every prefix is spread evenly over the video."""
    order, seen = [], set()
    levels = 1
    while len(order) < len(frames):
        for k in range(levels):
            i = int((k + 0.5) * len(frames) / levels)
            if i not in seen:
                seen.add(i)
                order.append(frames[i])
        levels *= 2
        if levels > 2 * len(frames):
            order += [f for i, f in enumerate(frames) if i not in seen]
            break
    return order


def disruptive_frames(pool_dir: Path, ids: list[str]) -> np.ndarray:
    """Boolean [len(ids)]: which frames of a pool made by `generate` are disruptive (blurred, dark, over-exposed,
    bubbles, black, noise), read from the pool's ground truth."""
    return pool_truth(pool_dir, ids).disruptive
