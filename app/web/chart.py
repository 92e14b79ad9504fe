"""Geometry of the board's chart, mean mIoU against R, as plain numbers for the SVG template.

R runs on a log axis (retention ratios are multiplicative: 1 %, 5 %, 10 %, 100 %). NormDEL iso-curves:
NormDEL = c  <=>  DEL = logit(c)  <=>  mIoU = logit(c) * exp(R) (alpha = 1). The Pareto front keeps the
submissions no other beats on both axes (lower R and higher mIoU); as a staircase it is the best mIoU
reached at each R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evaluator.metrics import NORMDEL_ALPHA, normdel

WIDTH, HEIGHT = 760, 400
LEFT, RIGHT, TOP, BOTTOM = 64, 56, 28, 48
NICE_R = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


@dataclass
class Point:
    id: int
    x: float
    y: float
    r: float
    miou: float
    miou_std: float | None
    normdel: float
    label: str
    baseline: bool
    on_front: bool = False
    err: tuple[float, float] | None = None  # y pixels of mean ± spread over seeds


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[float, float, float, float] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    iso: list[dict] = field(default_factory=list)  # {"c", "path", "label_xy"}
    front_path: str = ""
    points: list[Point] = field(default_factory=list)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (R, mIoU) that no other point dominates (R <= and mIoU >=, one strictly),
    in increasing R."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def iso_miou(c: float, r: float, alpha: float = NORMDEL_ALPHA) -> float:
    """The mIoU at which a selection retaining R scores NormDEL = c."""
    return math.log(c / (1 - c)) * math.exp(alpha * r)


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def build(rows: list[dict]) -> Chart:
    """`rows`: dicts with id, label, r, miou, miou_std, normdel, baseline (scores in [0, 1])."""
    chart = Chart()
    x0, y0, x1, y1 = chart.plot
    rs = [row["r"] for row in rows] or [0.05, 1.0]
    mious = [row["miou"] for row in rows] or [0.5, 0.8]
    r_lo = max(0.001, min(rs) / 1.6)
    lo, hi = min(mious), max(mious)
    pad = max(0.02, 0.12 * (hi - lo))
    m_lo, m_hi = max(0.0, lo - pad), min(1.0, hi + pad)

    def sx(r: float) -> float:
        return x0 + (math.log10(r) - math.log10(r_lo)) / (0 - math.log10(r_lo)) * (x1 - x0)

    def sy(m: float) -> float:
        return y1 - (m - m_lo) / (m_hi - m_lo) * (y1 - y0)

    chart.x_ticks = [(sx(r), f"{r * 100:g} %") for r in NICE_R if r >= r_lo]
    step = _nice_step(m_hi - m_lo, 5)
    tick = math.ceil(m_lo / step) * step
    while tick <= m_hi + 1e-9:
        chart.y_ticks.append((sy(tick), f"{tick * 100:.{0 if step >= 0.01 else 1}f}"))
        tick += step

    # iso-curves: levels spread over the NormDEL values the plot box spans
    c_lo, c_hi = normdel(m_lo, 1.0), normdel(m_hi, r_lo)
    for k in range(1, 5):
        c = round(c_lo + (c_hi - c_lo) * k / 5, 3)
        logit = math.log(c / (1 - c))
        if logit <= 0:
            continue
        # the R range where the curve is inside the box: mIoU = logit * exp(R) in [m_lo, m_hi]
        r_from = max(r_lo, math.log(m_lo / logit) / NORMDEL_ALPHA) if m_lo > 0 else r_lo
        r_to = min(1.0, math.log(m_hi / logit) / NORMDEL_ALPHA)
        if r_to <= r_from:
            continue
        a, b = math.log10(r_from), math.log10(r_to)
        inside = [
            (sx(10 ** (a + (b - a) * t / 60)), sy(iso_miou(c, 10 ** (a + (b - a) * t / 60))))
            for t in range(61)
        ]
        x, y = inside[-1]
        # the label sits just outside the box where the curve leaves it: above the top, or right of it
        label_xy = (x - 14, y0 - 6) if r_to < 1.0 else (x1 + 4, y + 4)
        chart.iso.append({"c": c, "path": _path(inside), "label_xy": label_xy})

    points = [
        Point(
            id=row["id"],
            x=sx(row["r"]),
            y=sy(row["miou"]),
            r=row["r"],
            miou=row["miou"],
            miou_std=row.get("miou_std"),
            normdel=row["normdel"],
            label=row["label"],
            baseline=row["baseline"],
        )  # fmt: skip
        for row in rows
    ]
    for p in points:
        if p.miou_std:
            p.err = (sy(min(m_hi, p.miou + p.miou_std)), sy(max(m_lo, p.miou - p.miou_std)))
    front = pareto_front([(p.r, p.miou) for p in points])
    steps: list[tuple[float, float]] = []
    for i in front:
        points[i].on_front = True
        if steps:
            steps.append((points[i].x, steps[-1][1]))
        steps.append((points[i].x, points[i].y))
    if steps:
        steps.append((x1, steps[-1][1]))
    chart.front_path = _path(steps) if len(steps) >= 2 else ""
    chart.points = points
    return chart


def _path(xy: list[tuple[float, float]]) -> str:
    return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in xy)


def loss_curve_path(curves: dict[int, list], width: int = 520, height: int = 220) -> dict | None:
    """The pretraining loss curves (one per seed: [[step, loss], ...]) as SVG paths with axis ticks."""
    curves = {seed: c for seed, c in curves.items() if c}
    if not curves:
        return None
    left, right, top, bottom = 56, 16, 12, 36
    steps = [s for c in curves.values() for s, _ in c]
    losses = [v for c in curves.values() for _, v in c]
    s_hi = max(steps) or 1
    l_lo, l_hi = min(losses), max(losses)
    if l_hi - l_lo < 1e-12:
        l_lo, l_hi = l_lo - 0.5, l_hi + 0.5

    def sx(s):
        return left + s / s_hi * (width - left - right)

    def sy(v):
        return height - bottom - (v - l_lo) / (l_hi - l_lo) * (height - top - bottom)

    y_step = _nice_step(l_hi - l_lo, 4)
    y_ticks, t = [], math.ceil(l_lo / y_step) * y_step
    while t <= l_hi + 1e-12:
        y_ticks.append((sy(t), f"{t:.3g}"))
        t += y_step
    x_step = _nice_step(s_hi, 5)
    x_ticks = [(sx(k * x_step), f"{k * x_step:g}") for k in range(int(s_hi // x_step) + 1)]
    return {
        "width": width, "height": height, "plot": (left, top, width - right, height - bottom),
        "paths": {seed: _path([(sx(s), sy(v)) for s, v in c]) for seed, c in sorted(curves.items())},
        "x_ticks": x_ticks, "y_ticks": y_ticks,
    }  # fmt: skip
