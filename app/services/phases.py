"""Benchmarks and phases, and the per-process cache of pool listings that upload validation reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import Benchmark, DuplicatePolicy, Phase, Visibility
from app.services.lru import LruCache
from evaluator.store import Pool, list_tasks, open_pool
from evaluator.tier import Tier, load_tier


def create_benchmark(*, session: Session, slug: str, name: str, description: str = "") -> Benchmark:
    if session.scalar(select(Benchmark.id).where(Benchmark.slug == slug)) is not None:
        raise ApiError(409, "exists", f"benchmark {slug!r} already exists")
    benchmark = Benchmark(slug=slug, name=name, description=description)
    session.add(benchmark)
    session.flush()
    return benchmark


def create_phase(
    *,
    session: Session,
    benchmark: Benchmark,
    slug: str,
    name: str,
    pool_dir: str | Path,
    tier: str,
    tasks_dir: str | Path | None = None,
    seeds: int = 1,
    quota_per_day: int | None = None,
    quota_total: int | None = None,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    results_visibility: Visibility = Visibility.public,
    duplicates: DuplicatePolicy = DuplicatePolicy.warn,
    description: str = "",
) -> Phase:
    """A phase, checked up front: its pool, tasks and tier must load (a typo fails here, not in a worker)."""
    pool_dir = Path(pool_dir).resolve()
    phase = Phase(
        benchmark_id=benchmark.id,
        slug=slug,
        name=name,
        description=description,
        pool_dir=str(pool_dir),
        tasks_dir=str(Path(tasks_dir).resolve()) if tasks_dir else None,
        tier=tier,
        seeds=seeds,
        quota_per_day=quota_per_day,
        quota_total=quota_total,
        opens_at=opens_at,
        closes_at=closes_at,
        results_visibility=results_visibility,
        duplicates=duplicates,
        published=False,
    )
    check_phase(phase)
    session.add(phase)
    session.flush()
    return phase


EDITABLE = (
    "name", "description", "pool_dir", "tasks_dir", "tier", "seeds", "quota_per_day", "quota_total",
    "opens_at", "closes_at", "results_visibility", "published", "duplicates",
)  # fmt: skip


def update_phase(*, session: Session, phase: Phase, changes: dict) -> dict:
    """Apply `changes` (a subset of EDITABLE) and check the phase again as `create_phase` does; returns
    {field: [old, new]} for what actually changed. New seeds, tier or pool apply to later submissions and
    to re-runs, never silently to finished results."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ApiError(422, "field", f"not editable: {sorted(unknown)}")
    if "pool_dir" in changes and changes["pool_dir"]:
        changes["pool_dir"] = str(Path(changes["pool_dir"]).resolve())
    if changes.get("tasks_dir"):
        changes["tasks_dir"] = str(Path(changes["tasks_dir"]).resolve())
    diff = {}
    for name, value in changes.items():
        old = getattr(phase, name)
        if old != value:
            diff[name] = [_plain(old), _plain(value)]
            setattr(phase, name, value)
    if {"pool_dir", "tasks_dir", "tier"} & set(changes):  # given again unchanged: the pool's hash is re-read
        check_phase(phase)
    session.flush()
    return diff


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value


def check_phase(phase: Phase) -> None:
    """Its pool, tasks and tier must load; raises ApiError(422, "phase_config") naming what does not. Records
    the pool's content hash, which every worker host checks its own copy against."""
    try:
        phase.pool_hash = pool_for(phase).content_hash
        list_tasks(phase.tasks_path)
        tier_for(phase)
    except (ValueError, OSError) as exc:  # StoreError and tier errors are ValueErrors
        raise ApiError(422, "phase_config", f"phase {phase.slug!r}: {exc}") from None


def get_benchmark(*, session: Session, slug: str) -> Benchmark:
    benchmark = session.scalar(select(Benchmark).where(Benchmark.slug == slug))
    if benchmark is None:
        raise ApiError(404, "benchmark_not_found", f"no benchmark {slug!r}")
    return benchmark


def get_phase(*, session: Session, slug: str) -> Phase:
    phase = session.scalar(select(Phase).where(Phase.slug == slug))
    if phase is None:
        raise ApiError(404, "phase_not_found", f"no phase {slug!r}")
    return phase


def tier_for(phase: Phase) -> Tier:
    return load_tier(phase.tier)


def seeds_for(phase: Phase, tier: Tier) -> list[int]:
    """The seeds a submission to `phase` is evaluated under: the tier's seed, then the next ones."""
    return [tier.seed + k for k in range(phase.seeds)]


# Pools by folder, reloaded when the manifest changes. Parsing a 1M-line manifest takes seconds, so uploads
# must not do it each time; a few pools at most are live at once.
_pools: LruCache[str, tuple[tuple[int, int], Pool]] = LruCache(capacity=4)


def pool_at(pool_dir: str) -> Pool:
    manifest = Path(pool_dir) / "manifest.jsonl"
    stat = manifest.stat() if manifest.exists() else None
    stamp = (stat.st_mtime_ns, stat.st_size) if stat else (0, 0)
    hit = _pools.get(pool_dir)
    if hit and hit[0] == stamp:
        return hit[1]
    pool = open_pool(pool_dir)
    pool.index_of  # noqa: B018 (build the ID index once, outside the request that first needs it)
    _pools.put(pool_dir, (stamp, pool))
    return pool


def pool_for(phase: Phase) -> Pool:
    return pool_at(phase.pool_dir)
