"""What each baseline keeps on the synthetic pool: share of disruptive frames and videos covered.

    .venv/bin/delbench synth --out data/synth                      # once
    .venv/bin/delbench embed --pool data/synth --tier synth-tiny   # once (pretrains the full-pool MAE)
    .venv/bin/python bench/composition.py --pool data/synth --tier synth-tiny

Reads the pool's `synth_truth.jsonl` (ground truth the manifest does not carry), so it only runs on a
pool made by `delbench synth`. No training: it explains a baselines table rather than producing one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluator.baselines import METHODS, Options, RatioUnreachable, select  # noqa: E402
from evaluator.baselines.features import FeaturesError, find_feature_set  # noqa: E402
from evaluator.store import open_pool  # noqa: E402
from evaluator.synth import disruptive_frames  # noqa: E402
from evaluator.tier import load_tier  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", required=True)
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--ratios", default="0.05,0.2,0.5")
    parser.add_argument(
        "--outlier-share", type=float, default=0.15, help="for the extra meddel row (default 0.15)"
    )
    args = parser.parse_args()

    pool = open_pool(args.pool)
    disruptive = disruptive_frames(pool.path, pool.ids)
    video = np.array([r["video"] for r in pool.records])
    tier = load_tier(args.tier)
    try:
        features = find_feature_set(pool.path, tier_hash=tier.hash, pretrain_seed=tier.seed).load(pool)
    except FeaturesError as exc:
        print(f"composition: {exc}", file=sys.stderr)
        return 2
    n_videos = len(set(video))
    print(f"pool {pool.path}: {pool.size:,} frames, {n_videos} videos, {disruptive.mean():.1%} disruptive")
    print(f"{'method':<24} {'ratio':>6} {'R':>7} {'disruptive kept':>16} {'videos covered':>15}")
    variants = [(m, Options()) for m in METHODS] + [
        (f"meddel share={args.outlier_share:g}", Options(outlier_share=args.outlier_share))
    ]
    cache: dict = {}
    for label, base in variants:
        method = label.split()[0]
        for ratio in (float(r) for r in args.ratios.split(",")):
            options = Options(**{**base.__dict__, "ratio": ratio})
            try:
                selected = select(method, features, options, cache=cache)
            except RatioUnreachable as exc:
                selected = exc.nearest
            kept = selected.indices
            covered = len(set(video[kept]))
            print(
                f"{label:<24} {ratio:>6.0%} {selected.ratio:>7.2%} {disruptive[kept].mean():>16.1%} "
                f"{covered:>8}/{n_videos}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
