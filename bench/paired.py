"""Paired differences against random, per dataset, from a `delbench baselines --seeds ...` folder.

    .venv/bin/python bench/paired.py runs/baselines-v2

For every row with an asked ratio, the difference of its mIoU from random's at the same ratio, seed by seed
(both ran the protocol with that seed), as mean ± standard error and in standard errors, for the mean over
the eight datasets (the table's headline) and for each dataset alone: which tasks drive a difference, and
whether one task's seed-to-seed instability swamps the others. Also full pool against no pretraining, in
seed standard deviations. No training: it reads the per-seed tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _per_seed_rows(out: Path) -> dict[int, list[dict]]:
    tables = {}
    for folder in sorted(out.glob("seed-*")):
        if not (folder / "baselines.json").exists():  # a seed still starting: read the finished ones
            continue
        doc = json.loads((folder / "baselines.json").read_text())
        tables[int(folder.name.split("-", 1)[1])] = doc["rows"]
    if not tables:
        raise SystemExit(f"paired: no seed-*/baselines.json under {out}")
    return tables


def _summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:+6.2f}"
    se = statistics.stdev(values) / len(values) ** 0.5
    t = f"{mean / se:+5.1f}" if se > 0 else "  inf"
    return f"{100 * mean:+6.2f} ± {100 * se:4.2f} ({t} SE)"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="the OUT folder of `delbench baselines --seeds`")
    args = parser.parse_args()
    tables = _per_seed_rows(args.out)
    seeds = sorted(tables)
    rows = {seed: {(r["method"], r["ratio_asked"]): r for r in tables[seed]} for seed in seeds}
    keys = [k for k in rows[seeds[0]] if all(k in rows[s] for s in seeds)]
    datasets = list(rows[seeds[0]][keys[0]]["datasets"])
    print(f"seeds {seeds}; points of mIoU, mean ± standard error of the paired difference")
    print(f"{'row':<24} {'mean of 8':>26}  " + "  ".join(f"{d[:10]:>10}" for d in datasets))
    for method, ratio in keys:
        random_key = ("random", ratio)
        if method == "random" or ratio is None or random_key not in rows[seeds[0]]:
            continue
        diffs = [rows[s][(method, ratio)]["mean_miou"] - rows[s][random_key]["mean_miou"] for s in seeds]
        per_task = []
        for d in datasets:
            values = [
                _miou(rows[s][(method, ratio)]["datasets"][d]) - _miou(rows[s][random_key]["datasets"][d])
                for s in seeds
            ]
            per_task.append(f"{100 * statistics.fmean(values):+10.2f}")
        signs = "".join("+" if v > 0 else "-" for v in diffs)
        print(f"{method + f' @ {ratio:g}':<24} {_summary(diffs):>26} {signs:>3} " + "  ".join(per_task))
    full = [rows[s].get(("full pool", 1.0)) for s in seeds]
    none = [rows[s].get(("no pretraining", None)) for s in seeds]
    if all(full) and all(none) and len(seeds) > 1:
        gap = statistics.fmean(f["mean_miou"] for f in full) - statistics.fmean(n["mean_miou"] for n in none)
        sd = max(statistics.stdev(r["mean_miou"] for r in group) for group in (full, none))
        print(
            f"\nfull pool − no pretraining: {100 * gap:+.2f} points = {gap / sd:.1f} seed sd (larger of the two)"
        )
    return 0


def _miou(value) -> float:
    return value["miou"] if isinstance(value, dict) else value


if __name__ == "__main__":
    raise SystemExit(main())
