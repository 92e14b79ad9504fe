"""Can a tier's finetune rank selections? The rows of `delbench baselines --truth-rows` at one ratio,
pretrained once per seed (the pretraining cache), then finetuned on every task under the tier as it is and
under each `--set` variant of its `finetune` section, side by side on the same encoders.

    .venv/bin/python bench/tier_signal.py --pool data/synth --ratio 0.05 --seeds 0,1,2 \\
        --methods random,meddel,semdedup --set freeze_encoder=true --out runs/signal

Prints, per variant, full pool minus no pretraining in seed-sd, and each row's paired difference from random
(mean, standard error, t = mean / SE, whether its sign is the same on every seed). Scores are appended to
OUT/scores.jsonl as they come, so an interrupted run resumes. A probe for choosing a tier version, not part
of the protocol: an adopted variant is a new tier version, measured again with `delbench baselines`.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluator.cpu_threads import set_default_wait_policy  # noqa: E402

set_default_wait_policy()  # what `delbench` runs with; before torch loads

import torch  # noqa: E402
from finetune_probe import parse_setting  # noqa: E402

from evaluator.baselines.embed import embed_pool  # noqa: E402
from evaluator.baselines.methods import METHODS, Features  # noqa: E402
from evaluator.baselines.table import plan_jobs  # noqa: E402
from evaluator.finetune import finetune  # noqa: E402
from evaluator.metrics import seed_sd  # noqa: E402
from evaluator.protocol import load_encoder, pretrain_encoder  # noqa: E402
from evaluator.store import list_tasks, open_pool, open_task  # noqa: E402
from evaluator.tier import Tier, load_tier  # noqa: E402


def variant(base: Tier, setting: dict) -> tuple[str, Tier]:
    raw = copy.deepcopy(base.to_dict())
    raw["finetune"].update(setting)
    label = ", ".join(f"{k}={v}" for k, v in setting.items()) or f"{base.name} v{base.version} as is"
    return label, Tier.from_dict(raw)


def paired(scores: dict, row: str, against: str, seeds: list[int]) -> str:
    diffs = [
        scores[(row, s)] - scores[(against, s)]
        for s in seeds
        if (row, s) in scores and (against, s) in scores
    ]
    if len(diffs) < 2:
        return "n/a"
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5
    same = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    t = mean / se if se else float("inf")
    return f"{100 * mean:+6.2f} ± {100 * se:4.2f} (t {t:+5.1f}{', same sign' if same else ''})"


def summary(records: list[dict], labels: list[str], seeds: list[int]) -> str:
    lines = []
    for label in labels:
        scores = {(r["row"], r["seed"]): r["mean_miou"] for r in records if r["variant"] == label}
        rows = list(dict.fromkeys(r["row"] for r in records if r["variant"] == label))
        lines.append(f"\n## {label}")
        full = [scores[("full pool", s)] for s in seeds if ("full pool", s) in scores]
        none = [scores[("no pretraining", s)] for s in seeds if ("no pretraining", s) in scores]
        if len(full) > 1 and len(none) > 1:
            sd = max(seed_sd(full), seed_sd(none))
            gap = statistics.mean(full) - statistics.mean(none)
            lines.append(f"full pool - no pretraining: {100 * gap:+.2f} points = {gap / sd:.1f} seed-sd")
        for row in rows:
            values = [scores[(row, s)] for s in seeds if (row, s) in scores]
            sd = seed_sd(values)
            line = f"  {row:<22} {100 * statistics.mean(values):6.2f}" + (f" ± {100 * sd:4.2f}" if sd else "")
            if row not in ("random", "full pool", "no pretraining") and ("random", seeds[0]) in scores:
                line += "   vs random " + paired(scores, row, "random", seeds)
            lines.append(line)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="random,meddel,semdedup")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE[,...]")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, help="pretraining cache (default OUT/cache)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    base = load_tier(args.tier)
    variants = [variant(base, {})] + [variant(base, parse_setting(s)) for s in args.set]
    labels = [label for label, _ in variants]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    pool = open_pool(args.pool)
    tasks_dir = args.pool / "tasks"
    tasks = {name: open_task(tasks_dir / name, base.resolution) for name in list_tasks(tasks_dir)}
    cache = args.cache or args.out / "cache"
    args.out.mkdir(parents=True, exist_ok=True)
    scores_path = args.out / "scores.jsonl"
    records = (
        [json.loads(line) for line in scores_path.read_text().splitlines()] if scores_path.exists() else []
    )
    done = {(r["variant"], r["row"], r["seed"]) for r in records}
    device = torch.device(args.device)
    started = time.perf_counter()
    for seed in seeds:
        features = Features(size=pool.size)
        if any(METHODS[m].needs for m in methods):
            feature_set, _ = embed_pool(pool, base, cache_dir=cache, seed=seed, device=args.device)
            features = feature_set.load(pool)
        jobs = plan_jobs(
            pool=pool, features=features, methods=methods, ratios=[args.ratio], seed=seed,
            reference_rows=True, device=args.device, truth_rows=True,
        )  # fmt: skip
        for job in jobs:
            todo = [(label, tier) for label, tier in variants if (label, job.method, seed) not in done]
            if not todo:
                continue
            path = None
            if job.selection is not None:
                path = pretrain_encoder(
                    pool=pool, selection=job.selection, tier=base, seed=seed, cache_dir=cache, device=device
                ).encoder_path
            for label, tier in todo:
                per_task = {}
                for name, task in tasks.items():
                    encoder = load_encoder(path, base, seed)  # fresh: a finetune changes it in place
                    per_task[name] = finetune(
                        encoder=encoder, task=task, tier=tier, seed=seed, device=device
                    )["miou"]
                record = {
                    "variant": label, "row": job.method, "seed": seed, "n": job.selection.n if job.selection else 0,
                    "mean_miou": statistics.mean(per_task.values()), "datasets": per_task,
                }  # fmt: skip
                records.append(record)
                with scores_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(
                    f"[{time.perf_counter() - started:6.0f} s] seed {seed} {job.method:<16} {label}: "
                    f"{100 * record['mean_miou']:.2f}",
                    flush=True,
                )
    print(summary(records, labels, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
