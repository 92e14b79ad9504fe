"""What each baseline keeps on a synthetic pool, read against the generator's ground truth: the share of
disruptive and invalid frames, of copies and of frames that show a polyp or instrument, and the videos covered.
Then the planted-copies check: meddel and semdedup asked to drop exactly as many frames as there are copies,
and the share of what they drop that is copies.

    .venv/bin/delbench synth --out data/synth                      # once
    .venv/bin/delbench embed --pool data/synth --tier synth-tiny   # once (pretrains the full-pool MAE)
    .venv/bin/python bench/composition.py --pool data/synth --tier synth-tiny
    .venv/bin/python bench/composition.py --pool data/synth --tier synth-tiny --embeddings-only

Reads the pool's `synth_truth.jsonl` (ground truth the manifest does not carry), so it only runs on a
pool made by `delbench synth`. No training: it explains a baselines table rather than producing one.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluator.baselines import METHODS, Options, RatioUnreachable, select  # noqa: E402
from evaluator.baselines.features import FeaturesError, find_feature_set  # noqa: E402
from evaluator.store import open_pool  # noqa: E402
from evaluator.synth import pool_truth  # noqa: E402
from evaluator.tier import load_tier  # noqa: E402


def copies_first(features, truth, method: str, options: Options) -> tuple[int, float]:
    """(frames dropped, share of them that are copies) when `method` is asked to drop as many frames as
    the pool holds copies (plus, for meddel, whatever its outlier step drops)."""
    n = len(truth.original)
    n_copies = int(truth.copies.sum())
    outliers = 0
    if (
        method == "meddel"
    ):  # its outlier step drops first, whatever the ratio (eta 1.5: above any cosine, the step alone)
        outliers = select(method, features, Options(**{**options.__dict__, "eta": 1.5})).info["outliers"]
    asked = Options(**{**options.__dict__, "ratio": (n - n_copies - outliers) / n})
    try:
        kept = select(method, features, asked).indices
    except RatioUnreachable as exc:
        kept = exc.nearest.indices
    dropped = np.setdiff1d(np.arange(n), kept)
    redundant = truth.copies_among(np.arange(n)) - truth.copies_among(kept)
    return len(dropped), redundant / max(1, len(dropped) - outliers)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pool", required=True)
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--ratios", default="0.05,0.2")
    parser.add_argument("--embeddings", help="feature set key (default: the tier's full-pool encoder's)")
    parser.add_argument(
        "--embeddings-only",
        action="store_true",
        help="the outlier and duplicate tests read the MAE embeddings instead of the thumbnails (what they did before)",
    )
    parser.add_argument(
        "--outlier-shares",
        default="0.2,0.4",
        help="extra meddel rows with eps read off the pool: drop this share farthest from their centre",
    )
    args = parser.parse_args()

    pool = open_pool(args.pool)
    truth = pool_truth(pool.path, pool.ids)
    video = np.array([r["video"] for r in pool.records])
    tier = load_tier(args.tier)
    try:
        found = (
            find_feature_set(pool.path, key=args.embeddings)
            if args.embeddings
            else find_feature_set(pool.path, tier_hash=tier.hash, pretrain_seed=tier.seed)
        )
        features = found.load(pool)
        if args.embeddings_only:
            features = dataclasses.replace(features, thumbnails=None)
    except FeaturesError as exc:
        print(f"composition: {exc}", file=sys.stderr)
        return 2
    n_videos = len(set(video))
    print(
        f"pool {pool.path}: {pool.size:,} frames, {n_videos} videos; disruptive {truth.disruptive.mean():.1%}, "
        f"invalid {truth.invalid.mean():.1%}, copies {truth.copies.mean():.1%}, pathology {truth.shows.mean():.1%}"
    )
    print(
        f"{'method':<22} {'ratio':>6} {'R':>7} {'disruptive':>11} {'invalid':>8} {'copies':>7} "
        f"{'pathology':>10} {'videos':>10}"
    )
    variants = [(m, Options()) for m in METHODS] + [
        ("meddel cosine-eps", Options(outlier_distance="cosine")),
    ]
    variants += [
        (f"meddel share={share}", Options(outlier_share=float(share)))
        for share in args.outlier_shares.split(",")
        if share.strip()
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
            print(
                f"{label:<22} {ratio:>6.0%} {selected.ratio:>7.2%} {truth.disruptive[kept].mean():>11.1%} "
                f"{truth.invalid[kept].mean():>8.1%} {truth.copies_among(kept) / len(kept):>7.1%} "
                f"{truth.shows[kept].mean():>10.1%} {len(set(video[kept])):>5}/{n_videos}"
            )
    if truth.copies.any():
        print(f"\nasked to drop the {int(truth.copies.sum())} copies (meddel: plus its outliers):")
        for label, method, options in (
            ("semdedup", "semdedup", Options()),
            ("meddel", "meddel", Options()),
            ("meddel cosine-eps", "meddel", Options(outlier_distance="cosine")),
        ):
            dropped, precision = copies_first(features, truth, method, options)
            print(f"  {label:<20} dropped {dropped:>5}, of the dedup drops {precision:.1%} are copies")
    if truth.invalid.any():
        for metric in ("euclidean", "cosine"):
            step = select("meddel", features, Options(eta=1.5, outlier_distance=metric))
            info, kept = step.info, step.indices
            removed = truth.invalid.sum() - truth.invalid[kept].sum()
            print(
                f"meddel outlier step ({metric}, eps {info['eps']}): drops {info['outliers']} frames, "
                f"{removed} of the {int(truth.invalid.sum())} invalid ones"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
