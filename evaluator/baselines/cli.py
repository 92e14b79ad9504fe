"""`delbench embed`, `delbench select` and `delbench baselines`.

Thin wiring: parse arguments, open the pool, call the library, print one summary. Every expected failure
(unknown method, ratio out of range, missing embeddings, unreachable ratio) ends with one line on stderr and
a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path


def _methods_epilog() -> str:
    from evaluator.baselines.methods import METHODS

    lines = ["methods:"]
    for method in METHODS.values():
        ratio = "exact ratio" if method.exact_ratio else "ratio within 1 point"
        needs = f"; needs {' and '.join(method.needs)} from `delbench embed`" if method.needs else ""
        body = textwrap.fill(
            f"{method.summary} ({ratio}{needs})", width=96, initial_indent="    ", subsequent_indent="    "
        )
        lines += [f"  {method.name}", body]
    return "\n".join(lines)


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"ratio must be in (0, 1], got {text}")
    return value


# ------------------------------------------------------------------------------------------- select


def select_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delbench select",
        description="Pick a subset of the pool with a baseline method; write one sample ID a line and print the R achieved.",
        epilog=_methods_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pool", required=True, help="pool folder")
    parser.add_argument("--method", required=True, help="random, meddel, semdedup, hard or prototype")
    parser.add_argument("--ratio", type=_ratio, help="retained fraction in (0, 1]")
    parser.add_argument("--out", required=True, type=Path, help="where to write the IDs, one a line")
    parser.add_argument("--seed", type=int, default=0, help="seeds k-means and random draws (default 0)")
    parser.add_argument("--k", type=int, help="k-means clusters (default sqrt(N))")
    parser.add_argument(
        "--eps",
        type=float,
        help="meddel: outlier cut on the distance to the cluster's centre (default 0.9, the paper's)",
    )
    parser.add_argument(
        "--outlier-distance",
        choices=("euclidean", "cosine"),
        default="euclidean",
        help="meddel: read that distance as |F - C| of unit vectors (default) or as 1 - cos(F, C)",
    )
    parser.add_argument(
        "--outlier-share",
        type=float,
        help="meddel: instead of --eps, drop this share farthest from their centroid (eps read off the pool)",
    )
    parser.add_argument(
        "--eta", type=float, help="meddel/semdedup: duplicate threshold on cosine (instead of --ratio)"
    )
    parser.add_argument(
        "--keep",
        choices=("nearest", "farthest"),
        default="nearest",
        help="semdedup: survivor of a duplicate group",
    )
    parser.add_argument("--tier", help="use the embeddings of this tier's full-pool encoder")
    parser.add_argument("--embeddings", help="use this feature set (key or .npy path under POOL/embeddings)")
    parser.add_argument(
        "--kmeans", choices=("auto", "faiss", "torch"), default="auto", help="k-means backend"
    )
    parser.add_argument("--device", help="torch device for k-means/pairwise steps (default cpu)")
    return parser


def run_select(argv: list[str]) -> int:
    parser = select_parser()
    args = parser.parse_args(argv)
    from evaluator.baselines.features import FeaturesError, find_feature_set
    from evaluator.baselines.methods import (
        MEDDEL_EPS,
        METHODS,
        Features,
        Options,
        RatioUnreachable,
        SelectError,
        select,
    )
    from evaluator.store import StoreError, open_pool
    from evaluator.tier import load_tier

    if args.method not in METHODS:
        parser.error(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    if args.eps is not None and args.outlier_share is not None:
        parser.error("give --eps or --outlier-share, not both")
    try:
        pool = open_pool(args.pool)
        features = Features(size=pool.size)
        if METHODS[args.method].needs:
            tier = load_tier(args.tier) if args.tier else None
            features = find_feature_set(
                pool.path,
                key=args.embeddings,
                tier_hash=tier.hash if tier else None,
                pretrain_seed=tier.seed if tier else None,
            ).load(pool)
        options = Options(
            ratio=args.ratio,
            seed=args.seed,
            k=args.k,
            eps=MEDDEL_EPS if args.eps is None else args.eps,
            outlier_share=args.outlier_share,
            outlier_distance=args.outlier_distance,
            eta=args.eta,
            keep=args.keep,
            kmeans_backend=args.kmeans,
            device=args.device,
        )
        selected = select(args.method, features, options)
    except RatioUnreachable as exc:
        raise SystemExit(f"{exc}; nothing written") from None
    except (SelectError, FeaturesError, StoreError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    from evaluator.baselines.table import write_ids

    write_ids(args.out, [pool.ids[i] for i in selected.indices])
    print(describe(selected, asked=args.ratio, out=args.out))
    return 0


def describe(selected, *, asked: float | None, out: Path | None = None) -> str:
    info = selected.info
    head = f"{info['method']}: kept {selected.n:,} of {selected.pool_size:,} (R = {selected.ratio:.2%}"
    head += f", asked {asked:.2%})" if asked is not None else ")"
    details = [
        f"{k} = {info[k]}"
        for k in (
            "k",
            "eps",
            "outlier_distance",
            "outlier_share",
            "outliers",
            "eta",
            "keep",
            "kmeans_backend",
        )
        if info.get(k) is not None
    ]
    return head + (f"; {', '.join(details)}" if details else "") + (f" -> {out}" if out else "")


# -------------------------------------------------------------------------------------------- embed


def embed_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delbench embed",
        description=(
            "Embed every pool image (mean of the encoder's final patch tokens) and score its MAE reconstruction "
            "loss, cached under POOL/embeddings/. The encoder is DELBench's own MAE pretrained on the whole pool "
            "for the tier (the 100 % baseline's pretraining, cached), or --checkpoint."
        ),
    )
    parser.add_argument("--pool", required=True, help="pool folder")
    parser.add_argument(
        "--tier", default="synth-tiny", help="protocol tier (name or JSON path); default synth-tiny"
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="use this encoder file instead of the full-pool pretraining"
    )
    parser.add_argument(
        "--cache", type=Path, help="pretraining cache folder (default $DELBENCH_CACHE or ~/.cache/delbench)"
    )
    parser.add_argument("--seed", type=int, default=None, help="pretraining seed (default: the tier's)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--force", action="store_true", help="recompute even when cached")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_embed(argv: list[str]) -> int:
    args = embed_parser().parse_args(argv)
    from evaluator.baselines.embed import embed_pool
    from evaluator.baselines.features import FeaturesError
    from evaluator.cli import StageProgress, default_cache_dir
    from evaluator.store import StoreError, open_pool
    from evaluator.tier import load_tier

    try:
        pool = open_pool(args.pool)
        tier = load_tier(args.tier)
        feature_set, cached = embed_pool(
            pool,
            tier,
            checkpoint=args.checkpoint,
            cache_dir=args.cache or default_cache_dir(),
            seed=args.seed,
            device=args.device,
            batch_size=args.batch_size,
            force=args.force,
            progress=StageProgress(enabled=not args.quiet),
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    except (FeaturesError, StoreError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from None
    meta = feature_set.meta
    state = "cached" if cached else "computed"
    losses = "with MAE losses" if feature_set.losses_path else "no losses (checkpoint has no decoder)"
    print(f"embeddings {state}: {meta['n']:,} x {meta['dim']} {losses} -> {feature_set.embeddings_path}")
    return 0


# ---------------------------------------------------------------------------------------- baselines


def baselines_parser() -> argparse.ArgumentParser:
    from evaluator.baselines.methods import METHODS

    parser = argparse.ArgumentParser(
        prog="delbench baselines",
        description=(
            "Evaluate every baseline method at each ratio, plus the full pool and no pretraining, and write "
            "OUT/baselines.md and OUT/baselines.json (mean mIoU, mean NormDEL, R, n). Rows already in "
            "OUT/baselines.json for the same selection and tier are reused, so an interrupted run resumes."
        ),
        epilog=_methods_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pool", required=True, help="pool folder (its tasks in POOL/tasks unless --tasks)")
    parser.add_argument(
        "--tier", default="synth-tiny", help="protocol tier (name or JSON path); default synth-tiny"
    )
    parser.add_argument(
        "--ratios", default="0.05,0.2,0.5", help="comma-separated ratios (default 0.05,0.2,0.5)"
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--tasks", type=Path, help="downstream tasks folder (default POOL/tasks)")
    parser.add_argument(
        "--cache", type=Path, help="pretraining cache folder (default $DELBENCH_CACHE or ~/.cache/delbench)"
    )
    parser.add_argument(
        "--seeds",
        help=(
            "comma-separated evaluation and selection seeds (default: the tier's). Several seeds write one "
            "table per seed in OUT/seed-S and, in OUT, every row's mean ± sd over them"
        ),
    )
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--no-reference-rows", action="store_true", help="skip the full-pool and no-pretraining rows"
    )
    parser.add_argument(
        "--truth-rows",
        action="store_true",
        help="a synthetic pool only: add an oracle (clean, no copies, spread over videos) and a "
        "disruptive-only row at each ratio, made from its ground truth: the ceiling and the floor",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (the per-evaluation lines stay)"
    )
    return parser


def run_baselines(argv: list[str]) -> int:
    parser = baselines_parser()
    args = parser.parse_args(argv)
    from evaluator.baselines.features import FeaturesError
    from evaluator.baselines.methods import METHODS, SelectError
    from evaluator.baselines.table import run_baselines_over_seeds
    from evaluator.cli import StageProgress, default_cache_dir
    from evaluator.store import StoreError, open_pool
    from evaluator.tier import load_tier

    try:
        ratios = [_ratio(r) for r in args.ratios.split(",") if r.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--ratios: {exc}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else None
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a comma-separated list of integers")
    if seeds and len(set(seeds)) != len(seeds):
        parser.error(f"--seeds: {args.seeds!r} repeats a seed")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    try:
        pool = open_pool(args.pool)
        tier = load_tier(args.tier)
        table = run_baselines_over_seeds(
            seeds=seeds or [tier.seed],
            pool=pool,
            tier=tier,
            methods=methods,
            ratios=ratios,
            out_dir=args.out,
            tasks_dir=args.tasks or Path(args.pool) / "tasks",
            cache_dir=args.cache or default_cache_dir(),
            device=args.device,
            reference_rows=not args.no_reference_rows,
            truth_rows=args.truth_rows,
            progress=StageProgress(enabled=not args.quiet),
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    except (FeaturesError, SelectError, StoreError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from None
    print(table.markdown)
    print(f"wrote {args.out / 'baselines.md'} and {args.out / 'baselines.json'}")
    return 0


RUNNERS = {"select": run_select, "embed": run_embed, "baselines": run_baselines}


def main(command_name: str, argv: list[str]) -> int:
    return RUNNERS[command_name](argv)
