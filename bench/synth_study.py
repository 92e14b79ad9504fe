"""Is the synthetic tier meaningful? Mean mIoU for no pretraining, a 5 % random selection and the full pool,
over several protocol seeds, with the seed-to-seed spread, in one run.

    python bench/synth_study.py --tier synth-tiny --seeds 0,1,2 [--device cuda] [--pool DIR]
    python bench/synth_study.py --conditions random,clean,disruptive      # does frame quality matter?
    python bench/synth_study.py --conditions random,spread                # does covering every video?

Full-pool pretraining must beat no pretraining by more than the spread, or the tier measures nothing.
`clean` and `disruptive` draw the same number of frames at random among the pool's clean frames only or its
disruptive frames only (from the generator's ground truth, which participants do not see): how far apart
they land says how much a selection that avoids disruptive frames can gain on this pool. `spread` takes one
random frame of every video first, then the rest at random: the most even coverage of the videos (a uniform
random draw misses some), so its distance from `random` says what covering more videos is worth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluator.baselines.methods import Features, Options, select  # noqa: E402
from evaluator.metrics import seed_sd  # noqa: E402
from evaluator.protocol import evaluate  # noqa: E402
from evaluator.selection import load_selection  # noqa: E402
from evaluator.store import Pool, open_pool  # noqa: E402
from evaluator.synth import disruptive_frames, generate  # noqa: E402
from evaluator.tier import load_tier  # noqa: E402


def subsets(pool: Pool, ratio: float, names: list[str]) -> dict[str, tuple[str, np.ndarray | None]]:
    """(label, pool rows or None for no pretraining) of each condition named; every draw is seeded, so the
    subsets are the same in every run and for every protocol seed."""
    unknown = set(names) - {"none", "random", "full", "clean", "disruptive", "spread"}
    if unknown:
        raise ValueError(f"--conditions: unknown {', '.join(sorted(unknown))}")
    # The same subset as `delbench select --method random --ratio R` (seed 0).
    subset = select("random", Features(size=pool.size), Options(ratio=ratio, seed=0)).indices
    chosen = {
        "none": ("no pretraining", None),
        "random": (f"random {ratio:.0%}", np.asarray(subset)),
        "full": ("full pool", np.arange(pool.size)),
    }
    if {"clean", "disruptive"} & set(names):
        disruptive = disruptive_frames(pool.path, pool.ids)
        rng = np.random.default_rng(0)
        for name, among in (("clean", ~disruptive), ("disruptive", disruptive)):
            candidates = np.flatnonzero(among)
            if len(subset) > len(candidates):
                raise ValueError(
                    f"--ratio {ratio}: {len(subset)} frames, but the pool has {len(candidates)} {name}"
                )
            chosen[name] = (
                f"{name} only {ratio:.0%}",
                np.sort(rng.choice(candidates, len(subset), replace=False)),
            )
    if "spread" in names:
        rng = np.random.default_rng(0)
        videos: dict[str, list[int]] = {}
        for i, record in enumerate(pool.records):
            videos.setdefault(record["video"], []).append(i)
        if len(subset) < len(videos):
            raise ValueError(f"--ratio {ratio}: {len(subset)} frames cannot cover {len(videos)} videos")
        one_each = np.array([rng.choice(frames) for frames in videos.values()])
        rest = rng.choice(
            np.setdiff1d(np.arange(pool.size), one_each), len(subset) - len(one_each), replace=False
        )
        chosen["spread"] = (f"one per video {ratio:.0%}", np.sort(np.r_[one_each, rest]))
    return {name: chosen[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tier", default="synth-tiny", help="a tier, or several separated by commas (compared)"
    )
    parser.add_argument(
        "--conditions",
        default="none,random,full",
        help="any of none, random, full, clean, disruptive, spread",
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument(
        "--pool", type=Path, help="existing synthetic pool (default: generate one, seed 0, size 4800)"
    )
    parser.add_argument(
        "--pool-version", type=int, default=2, help="version of the pool generated without --pool (default 2)"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    tiers = [load_tier(t) for t in args.tier.split(",")]
    tier = tiers[0]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="delbench-study-"))
    pool_dir = args.pool or work / "pool"
    if args.pool is None:
        generate(pool_dir, seed=0, size=4800, resolution=tier.resolution, version=args.pool_version)
    pool = open_pool(pool_dir)
    try:
        chosen = subsets(pool, args.ratio, args.conditions.split(","))
    except ValueError as exc:
        parser.error(str(exc))
    conditions = {
        name: (label, None if rows is None else load_selection("\n".join(pool.ids[i] for i in rows).encode(), pool.index_of))
        for name, (label, rows) in chosen.items()
    }  # fmt: skip
    raw: dict[str, list[dict]] = {}
    for tier in tiers:
        for name in args.conditions.split(","):
            label, selection = conditions[name]
            label = f"{tier.name} {label}" if len(tiers) > 1 else label
            for seed in seeds:
                t0 = time.perf_counter()
                result = evaluate(
                    pool_dir=pool_dir,
                    selection=selection,
                    tasks_dir=None,
                    tier=tier,
                    seed=seed,
                    cache_dir=work / "cache",
                    device=args.device,
                )
                raw.setdefault(label, []).append(result)
                print(
                    f"{label:>16} seed {seed}: mean mIoU {result['mean_miou']:.4f} ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
    print(f"\ntiers {', '.join(t.name + ' ' + t.hash[:12] for t in tiers)}; seeds {seeds}, pool {pool.size}")
    print("| selection | R | mean mIoU (mean ± sd over seeds) | spread (max − min) | mean NormDEL |")
    print("|---|---|---|---|---|")
    for label, results in raw.items():
        m = [r["mean_miou"] for r in results]
        nd = [r["mean_normdel"] for r in results if r["mean_normdel"] is not None]
        nd_text = f"{statistics.mean(nd):.4f}" if nd else "—"
        print(
            f"| {label} | {results[0]['retained_fraction']:.2f} | {statistics.mean(m):.4f} ± {seed_sd(m) or 0:.4f} "
            f"| {max(m) - min(m):.4f} | {nd_text} |"
        )
    per_task = {
        label: {t: statistics.mean(r["datasets"][t]["miou"] for r in rs) for t in rs[0]["datasets"]}
        for label, rs in raw.items()
    }
    print("\nper-task mean mIoU:")
    for label, tasks in per_task.items():
        print(f"  {label:>16}: " + "  ".join(f"{t}={v:.3f}" for t, v in tasks.items()))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
