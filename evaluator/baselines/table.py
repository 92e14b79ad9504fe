"""`delbench baselines`: every method at every ratio through the full protocol, as one table.

All selections are made first (seconds), so a missing input fails before any evaluation starts; then each
is evaluated in turn with `protocol.evaluate`. Rows are appended to OUT/baselines.json as they finish and
a row whose (selection hash, tier hash, seed) is already there is reused, so an interrupted run resumes
where it stopped; rows of an earlier run this one does not ask for stay there too (`earlier_rows`). The
full-pool row shares its pretraining with `delbench embed` through the protocol's encoder cache. With several seeds (`run_baselines_over_seeds`) each seed gets its own table in OUT/seed-S,
re-drawing the selections from that seed's full-pool encoder and re-running the protocol with that seed, and
OUT/baselines.* give each row's mean ± sd over the seeds: the only way to tell which method differences
exceed seed noise.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluator.baselines.embed import embed_pool, full_pool_selection
from evaluator.baselines.methods import METHODS, Features, Options, RatioUnreachable, select
from evaluator.metrics import seed_sd
from evaluator.selection import ResolvedSelection, selection_hash
from evaluator.store import Pool, write_json_atomic, write_text_atomic
from evaluator.tier import Tier

TABLE_FORMAT = "delbench-baselines/1"
SEEDS_FORMAT = "delbench-baselines-seeds/1"


@dataclass
class Job:
    method: str  # a METHODS name, "full pool" or "no pretraining"
    ratio: float | None  # asked
    selection: ResolvedSelection | None
    info: dict
    note: str | None = None


@dataclass
class Table:
    rows: list[dict]
    markdown: str


# Rows only a synthetic pool can have: selections made from its ground truth, the table's ceiling and floor.
TRUTH_ROWS = ("oracle", "disruptive only")


def _resolved(pool: Pool, indices) -> ResolvedSelection:
    ids = [pool.ids[i] for i in indices]
    return ResolvedSelection(
        ids=ids, indices=indices, pool_size=pool.size, selection_hash=selection_hash(ids)
    )


def plan_jobs(
    *,
    pool: Pool,
    features: Features,
    methods: list[str],
    ratios: list[float],
    seed: int,
    reference_rows: bool,
    device,
    truth_rows: bool = False,
) -> list[Job]:
    jobs = []
    if reference_rows:
        jobs.append(Job("full pool", 1.0, full_pool_selection(pool), {}))
        jobs.append(Job("no pretraining", None, None, {}))
    if truth_rows:
        from evaluator.synth import pool_truth, truth_selection

        truth = pool_truth(pool.path, pool.ids)
        for name in TRUTH_ROWS:
            for ratio in ratios:
                indices = truth_selection(truth, name, round(ratio * pool.size), seed=seed)
                jobs.append(Job(name, ratio, _resolved(pool, indices), {"from": "synth_truth.jsonl"}))
    cache: dict = {}  # one clustering per method family and seed, shared across ratios
    for method in methods:
        for ratio in ratios:
            note = None
            try:
                selected = select(
                    method, features, Options(ratio=ratio, seed=seed, device=device), cache=cache
                )
            except RatioUnreachable as exc:
                selected, note = exc.nearest, str(exc)
            jobs.append(Job(method, ratio, _resolved(pool, selected.indices), selected.info, note))
    return jobs


def run_baselines(
    *,
    pool: Pool,
    tier: Tier,
    methods: list[str],
    ratios: list[float],
    out_dir: Path,
    tasks_dir: Path,
    cache_dir: Path,
    seed: int | None = None,
    device: str | None = None,
    reference_rows: bool = True,
    truth_rows: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] = lambda msg: None,
    features: Features | None = None,
    evaluate_fn: Callable[..., dict] | None = None,
) -> Table:
    """Evaluate each method at each ratio (and the reference rows); `features` and `evaluate_fn` default to
    `delbench embed`'s cached features and `protocol.evaluate` (tests pass stand-ins)."""
    if evaluate_fn is None:
        from evaluator.protocol import evaluate as evaluate_fn
    seed = tier.seed if seed is None else seed
    out_dir = Path(out_dir)
    check_out_dir(out_dir, tier, seed)
    (out_dir / "selections").mkdir(parents=True, exist_ok=True)

    if features is None and any(METHODS[m].needs for m in methods):
        feature_set, cached = embed_pool(
            pool, tier, cache_dir=cache_dir, seed=seed, device=device, progress=progress, log=log
        )
        log(f"features {'from cache' if cached else 'computed'}: {feature_set.embeddings_path}")
        features = feature_set.load(pool)
    features = features or Features(size=pool.size)
    jobs = plan_jobs(
        pool=pool,
        features=features,
        methods=methods,
        ratios=ratios,
        seed=seed,
        reference_rows=reference_rows,
        device=device,
        truth_rows=truth_rows,
    )

    json_path = out_dir / "baselines.json"
    previous = _previous_rows(out_dir)
    done = dict(previous)
    rows: list[dict] = []
    started = time.perf_counter()
    evaluated = 0
    for i, job in enumerate(jobs, 1):
        label = job.method + (
            f" @ {job.ratio:g}" if job.method in METHODS or job.method in TRUTH_ROWS else ""
        )
        if job.method in METHODS or job.method in TRUTH_ROWS:
            name = f"{job.method}-{job.ratio:g}.txt"
            write_ids(out_dir / "selections" / name, job.selection.ids)
        key = job.selection.selection_hash if job.selection else "none"
        if key in done:
            row = {
                **done[key],
                "method": job.method,
                "ratio_asked": job.ratio,
                "info": job.info,
                "note": job.note,
            }
            log(f"[{i}/{len(jobs)}] {label}: reused from {json_path}")
        else:
            n = job.selection.n if job.selection else 0
            log(
                f"[{i}/{len(jobs)}] {label}: evaluating n = {n:,} (R = {n / pool.size:.2%})"
                + (f"; note: {job.note}" if job.note else "")
            )
            t0 = time.perf_counter()
            result = evaluate_fn(
                pool_dir=pool.path,
                selection=job.selection,
                tasks_dir=tasks_dir,
                tier=tier,
                seed=seed,
                cache_dir=cache_dir,
                progress=progress,
                device=device,
            )
            evaluated += 1
            row = _row(job, result, pool.size, seconds=time.perf_counter() - t0)
            per_eval = (time.perf_counter() - started) / evaluated
            left = sum(
                1 for j in jobs[i:] if (j.selection.selection_hash if j.selection else "none") not in done
            )
            log(
                f"[{i}/{len(jobs)}] {label}: mean mIoU {row['mean_miou']:.4f}"
                + (f", mean NormDEL {row['mean_normdel']:.4f}" if row["mean_normdel"] is not None else "")
                + f" in {row['seconds']:.0f} s; about {per_eval * left / 60:.0f} min left"
            )
        rows.append(row)
        done[key] = row
        # rows of an earlier run that this one has not reached, or does not ask for (another ratio or
        # method), stay in the file: an interrupted or narrower run never loses an evaluation
        written = {r["selection_hash"] for r in rows}
        earlier = [r for k, r in previous.items() if k not in written]
        _write_json(json_path, tier, pool, rows, table_format=TABLE_FORMAT, seed=seed, earlier_rows=earlier)
    markdown = render_markdown(rows, tier=tier, pool=pool)
    write_text_atomic(out_dir / "baselines.md", markdown)
    return Table(rows=rows, markdown=markdown)


def run_baselines_over_seeds(
    *, seeds: list[int], out_dir: Path, log: Callable[[str], None] = lambda msg: None, **kwargs
) -> Table:
    """`run_baselines` once per seed into OUT/seed-S (each resumes on its own), then OUT/baselines.json and
    OUT/baselines.md with every row's mean ± sd over the seeds. One seed is the plain table in OUT."""
    out_dir = Path(out_dir)
    if len(seeds) == 1:
        return run_baselines(seed=seeds[0], out_dir=out_dir, log=log, **kwargs)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: {seeds} repeats a seed")
    tier = kwargs["tier"]
    check_out_dir(out_dir, tier, seeds)  # every folder checked before hours of evaluations, not after
    for seed in seeds:
        check_out_dir(out_dir / f"seed-{seed}", tier, seed)
    moved = _move_one_seed_table(out_dir, seeds)
    if moved is not None:
        log(
            f"the one-seed table in {out_dir} is seed {moved}'s: moved to {out_dir / f'seed-{moved}'}, reused"
        )
    per_seed = []
    started = time.perf_counter()
    for k, seed in enumerate(seeds, 1):
        log(f"seed {seed} ({k}/{len(seeds)}): table in {out_dir / f'seed-{seed}'}")
        per_seed.append(run_baselines(seed=seed, out_dir=out_dir / f"seed-{seed}", log=log, **kwargs).rows)
        if k < len(seeds):  # each seed's table costs about the same, reused rows aside
            per_seed_s = (time.perf_counter() - started) / k
            log(
                f"seed {seed} done; about {per_seed_s * (len(seeds) - k) / 60:.0f} min left for the other seeds"
            )
    rows = mean_over_seeds(per_seed, seeds)
    pool = kwargs["pool"]
    _write_json(out_dir / "baselines.json", tier, pool, rows, table_format=SEEDS_FORMAT, seeds=seeds)
    markdown = render_markdown(rows, tier=tier, pool=pool, seeds=seeds)
    write_text_atomic(out_dir / "baselines.md", markdown)
    return Table(rows=rows, markdown=markdown)


def mean_over_seeds(per_seed: list[list[dict]], seeds: list[int]) -> list[dict]:
    """Rows of several one-seed tables (the same methods and ratios), merged by (method, ratio asked): each
    number becomes {mean, sd, values} with the sample sd; None where any seed has none (no NormDEL without
    a selection). A method's `miou_vs_random` is its mIoU minus random's at the same ratio, seed by seed
    (paired: both ran the protocol with that seed), which cancels the seed's shared share of the noise."""
    groups: dict[tuple, list[dict]] = {}
    for rows in per_seed:
        for row in rows:
            groups.setdefault((row["method"], row["ratio_asked"]), []).append(row)
    merged = []
    for (method, ratio), rows in groups.items():
        if len(rows) != len(seeds):
            raise ValueError(f"{method} @ {ratio}: {len(rows)} rows for {len(seeds)} seeds")
        merged.append(
            {
                "method": method,
                "ratio_asked": ratio,
                "seeds": seeds,
                "n": _spread([r["n"] for r in rows]),
                "R": _spread([r["R"] for r in rows]),
                "mean_miou": _spread([r["mean_miou"] for r in rows]),
                "mean_normdel": _spread([r["mean_normdel"] for r in rows]),
                "datasets": {
                    name: statistics.fmean(r["datasets"][name] for r in rows) for name in rows[0]["datasets"]
                },
                "selection_hashes": [r["selection_hash"] for r in rows],
                "tier_hash": rows[0]["tier_hash"],
                "note": "; ".join(dict.fromkeys(r["note"] for r in rows if r.get("note"))) or None,
            }
        )
    for row in merged:
        random_rows = groups.get(("random", row["ratio_asked"]))
        paired = row["method"] in METHODS or row["method"] in TRUTH_ROWS
        if paired and row["method"] != "random" and random_rows:
            own = row["mean_miou"]["values"]
            row["miou_vs_random"] = _spread(
                [a - r["mean_miou"] for a, r in zip(own, random_rows, strict=True)]
            )
    return merged


def _spread(values: list) -> dict | None:
    if any(v is None for v in values):
        return None
    return {"mean": statistics.fmean(values), "sd": seed_sd(values), "values": values}


def _row(job: Job, result: dict, pool_size: int, *, seconds: float) -> dict:
    return {
        "method": job.method,
        "ratio_asked": job.ratio,
        "n": result["n_selected"],
        "R": result["retained_fraction"],
        "mean_miou": result["mean_miou"],
        "mean_normdel": result["mean_normdel"],
        "datasets": {name: d["miou"] for name, d in result["datasets"].items()},
        "selection_hash": result["selection_hash"] or "none",
        "tier_hash": result["tier_hash"],
        "code_version": result.get("code_version"),
        "seconds": round(seconds, 1),
        "info": job.info,
        "note": job.note,
    }


def _table_in(out_dir: Path) -> dict | None:
    path = out_dir / "baselines.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a baselines table ({exc}); move it away") from None
    if not isinstance(doc, dict) or doc.get("format") not in (TABLE_FORMAT, SEEDS_FORMAT):
        raise ValueError(f"{path} is not a baselines table (no format {TABLE_FORMAT!r}); move it away")
    return doc


def _whose(doc: dict) -> str:
    seeding = f"seed {doc.get('seed')}" if doc["format"] == TABLE_FORMAT else f"seeds {doc.get('seeds')}"
    return f"tier {doc.get('tier')} (hash {str(doc.get('tier_hash'))[:12]}), {seeding}"


def check_out_dir(out_dir: Path, tier: Tier, seeding: int | list[int]) -> None:
    """Refuse an OUT whose baselines.json is another table (another tier, tier version or seed, or one seed's
    table where several are asked for, or the reverse): a run would replace it, losing its evaluations.
    A table of the same tier and seed(s) is resumed or extended."""
    doc = _table_in(out_dir)
    if doc is None:
        return
    several = isinstance(seeding, list)
    if doc["format"] == SEEDS_FORMAT and not several:
        raise ValueError(
            f"{out_dir} holds the table over seeds {doc.get('seeds')}; seed {seeding}'s own table is "
            f"{out_dir / f'seed-{seeding}'} (give that as --out), or give all the seeds to extend it"
        )
    same_seeds = doc["format"] == SEEDS_FORMAT or (not several and doc.get("seed") == seeding)
    one_seed_to_move = several and doc["format"] == TABLE_FORMAT and doc.get("seed") in seeding
    if doc.get("tier_hash") != tier.hash or not (same_seeds or one_seed_to_move):
        asked = f"seeds {seeding}" if several else f"seed {seeding}"
        raise ValueError(
            f"{out_dir / 'baselines.json'} is the table of {_whose(doc)}, not of tier {tier.name} "
            f"(hash {tier.hash[:12]}), {asked}; give another --out, or move it away to start afresh"
        )


def _move_one_seed_table(out_dir: Path, seeds: list[int]) -> int | None:
    """A one-seed table in OUT (checked: same tier, one of `seeds`) becomes that seed's table in OUT/seed-S,
    where the run over seeds reuses its rows; returns its seed, or None if there was none."""
    doc = _table_in(out_dir)
    if doc is None or doc["format"] != TABLE_FORMAT:
        return None
    target = out_dir / f"seed-{doc['seed']}"
    if (target / "baselines.json").exists():
        raise ValueError(
            f"{out_dir} holds seed {doc['seed']}'s table and so does {target}; move one of them away"
        )
    target.mkdir(parents=True, exist_ok=True)
    if (out_dir / "selections").is_dir() and not (target / "selections").exists():
        os.replace(out_dir / "selections", target / "selections")
    os.replace(out_dir / "baselines.json", target / "baselines.json")
    return doc["seed"]


def _previous_rows(out_dir: Path) -> dict[str, dict]:
    """The rows already evaluated in OUT's table (`check_out_dir` made sure it is this tier's and seed's)."""
    doc = _table_in(out_dir)
    rows = [*doc.get("rows", []), *doc.get("earlier_rows", [])] if doc else []
    return {row["selection_hash"]: row for row in rows}


def _write_json(
    path: Path,
    tier: Tier,
    pool: Pool,
    rows: list[dict],
    *,
    table_format: str,
    earlier_rows: list[dict] | None = None,
    **seeding,
) -> None:
    """One seed's table (`seed=`) or the table over seeds (`seeds=`), replaced atomically. `earlier_rows`:
    evaluations of an earlier run that are not (yet) rows of this table, kept for reuse."""
    doc = {
        "format": table_format,
        "tier": tier.name,
        "tier_hash": tier.hash,
        **seeding,
        "pool": str(pool.path),
        "pool_size": pool.size,
        "rows": rows,
        **({"earlier_rows": earlier_rows} if earlier_rows else {}),
    }
    write_json_atomic(path, doc)


def render_markdown(rows: list[dict], *, tier: Tier, pool: Pool, seeds: list[int] | None = None) -> str:
    """One seed's rows hold plain numbers; `mean_over_seeds` rows hold {mean, sd, values}, shown mean ± sd."""
    head = f"Baselines on `{pool.path}` ({pool.size:,} images), tier `{tier.name}` (`{tier.hash[:12]}`)"
    if seeds:
        head += (
            f", seeds {', '.join(map(str, seeds))}: mean ± sd over the seeds (each seed draws its own "
            "selections and runs the protocol with that seed)"
        )
    header = "| Method | Asked | R | n | Mean mIoU (%) | Mean NormDEL |"
    if seeds:
        header += " mIoU − random's, paired by seed (points) | in standard errors | same sign every seed |"
    lines = [head + ".", "", header, "|---" + "|---:" * (header.count("|") - 2) + "|"]
    notes = []
    for row in rows:
        asked = "—" if row["ratio_asked"] is None else f"{row['ratio_asked']:.0%}"
        mark = ""
        if row.get("note"):
            notes.append(row["note"])
            mark = f" [{len(notes)}]"
        cells = [
            _cell(row["R"], lambda v: f"{v:.2%}"),
            _cell(row["n"], lambda v: f"{v:,}"),
            _cell(row["mean_miou"], lambda v: f"{100 * v:.2f}", sd=lambda v: f"{100 * v:.2f}"),
            _cell(row["mean_normdel"], lambda v: f"{v:.4f}", sd=lambda v: f"{v:.4f}"),
        ]
        if seeds:
            diff = row.get("miou_vs_random")
            cells.append(_cell(diff, lambda v: f"{100 * v:+.2f}", sd=lambda v: f"{100 * v:.2f}"))
            cells += list(_paired_test(diff))
        lines.append(f"| {row['method']}{mark} | {asked} | {' | '.join(cells)} |")
    for i, note in enumerate(notes, 1):
        lines.append(f"\n[{i}] {note}")
    return "\n".join(lines) + "\n"


def _paired_test(diff: dict | None) -> tuple[str, str]:
    """(mean / standard error of the paired differences, whether every seed's difference has one sign)."""
    if not diff or diff.get("sd") is None:
        return "—", "—"
    values = diff["values"]
    se = diff["sd"] / len(values) ** 0.5
    ratio = f"{diff['mean'] / se:+.1f}" if se > 0 else "—"
    same = all(v > 0 for v in values) or all(v < 0 for v in values)
    return ratio, "yes" if same else "no"


def _cell(value, fmt: Callable, sd: Callable | None = None) -> str:
    """A plain number, or a {mean, sd, values} spread: mean ± sd, or the range where only it is telling."""
    if value is None:
        return "—"
    if not isinstance(value, dict):
        return fmt(value)
    if sd is not None:
        return f"{fmt(value['mean'])} ± {sd(value['sd'])}"
    low, high = min(value["values"]), max(value["values"])
    return fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"


def write_ids(path: Path, ids: list[str]) -> None:
    """A selection file: one ID a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
