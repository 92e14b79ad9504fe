"""`delbench synth | evaluate | pretrain | normdel | tiers`: the evaluator's own command line.

Imports stay inside the commands: `normdel` and `--help` must answer without loading torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("DELBENCH_CACHE", Path.home() / ".cache" / "delbench"))


class StageProgress:
    """A ProgressFn that shows one tqdm bar per stage on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.stage = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(
                total=total, desc=stage, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True
            )
        self.bar.n = done
        self.bar.refresh() if done == total else self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_synth(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="delbench synth",
        description="Generate the synthetic DataDEL pool (DIR) and its eight downstream tasks (DIR/tasks). Same seed, same bytes.",
    )
    parser.add_argument("--out", required=True, type=Path, help="pool folder to write (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=4800, help="number of pool frames (default 4800)")
    parser.add_argument(
        "--version",
        type=int,
        choices=(1, 2),
        default=2,
        help="2 (default): redundancy structured like the real pool (single shots, videos of uneven length, "
        "long capsule videos, copies, rare pathology); 1: the uniform pool of 24-frame videos",
    )
    parser.add_argument(
        "--resolution", type=int, default=64, help="stored image side in pixels (default 64, synth-tiny's)"
    )
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be at least 1")
    from tqdm import tqdm

    from evaluator.synth import generate

    bar = tqdm(desc="synth", unit="img", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    summary = generate(
        args.out,
        seed=args.seed,
        size=args.size,
        resolution=args.resolution,
        version=args.version,
        progress=progress,
    )
    bar.close()
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="delbench evaluate",
        description="Run the fixed DELBench protocol on a selection: MAE pretraining for the tier's budget of "
        "samples seen, then the eight segmentation finetunes; writes mIoU and NormDEL per dataset as JSON.",
    )
    parser.add_argument("--pool", required=True, type=Path, help="pool folder (manifest.jsonl + arrays)")
    parser.add_argument(
        "--ids", type=Path, help="selection file: one ID a line, a JSON list, or CSV with an `id` column"
    )
    parser.add_argument(
        "--no-pretrain", action="store_true", help="random-init encoder: the floor any selection must beat"
    )
    parser.add_argument("--tasks", type=Path, help="downstream tasks folder (default: POOL/tasks)")
    parser.add_argument(
        "--tier", default="synth-tiny", help="tier name or tier JSON path (default synth-tiny)"
    )
    parser.add_argument("--seed", type=int, help="default: the tier's seed")
    parser.add_argument("--out", type=Path, help="write the results JSON here (default: stdout)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="encoder cache (default $DELBENCH_CACHE or ~/.cache/delbench)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.no_pretrain == (args.ids is not None):
        parser.error("give exactly one of --ids FILE or --no-pretrain")

    from evaluator.selection import SelectionError, load_selection
    from evaluator.store import StoreError, open_pool
    from evaluator.tier import load_tier

    try:
        tier = load_tier(args.tier)
        pool = open_pool(args.pool)
        selection = None
        if args.ids is not None:
            try:
                data = args.ids.read_bytes()
            except OSError as exc:
                raise SystemExit(f"{args.ids}: {exc.strerror}") from None
            selection = load_selection(data, pool.index_of)
    except SelectionError as exc:
        raise SystemExit(f"{args.ids}: {exc}") from None
    except (StoreError, ValueError) as exc:
        raise SystemExit(str(exc)) from None

    from evaluator.protocol import evaluate

    progress = StageProgress(enabled=not args.quiet)
    try:
        results = evaluate(
            pool_dir=args.pool,
            selection=selection,
            tasks_dir=args.tasks,
            tier=tier,
            seed=tier.seed if args.seed is None else args.seed,
            cache_dir=args.cache or default_cache_dir(),
            progress=progress,
            device=args.device,
        )
    except StoreError as exc:
        raise SystemExit(str(exc)) from None
    finally:
        progress.close()
    text = json.dumps(results, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        summary = f"mean mIoU {results['mean_miou']:.4f}"
        if results["mean_normdel"] is not None:
            summary += f", mean NormDEL {results['mean_normdel']:.4f}, R {results['retained_fraction']:.4f}"
        print(f"{summary}; wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_pretrain(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="delbench pretrain",
        description="The protocol's pretraining stage alone: MAE pretraining on a selection, cached under "
        "CACHE/encoders/. Run under torchrun for data-parallel pretraining (`torchrun --nproc_per_node N -m "
        "delbench pretrain ...`; several hosts: --nnodes, --rdzv-backend c10d, --rdzv-endpoint); the result "
        "is the same protocol whatever the number of ranks. Prints the encoder's path and writes its loss "
        "curve beside it.",
    )
    parser.add_argument("--pool", required=True, type=Path)
    parser.add_argument("--ids", required=True, type=Path, help="selection file (as for evaluate)")
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--seed", type=int, help="default: the tier's seed")
    parser.add_argument(
        "--cache", type=Path, help="encoder cache (default $DELBENCH_CACHE or ~/.cache/delbench)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--progress-file", type=Path, help="the main rank also keeps its progress in this JSON file"
    )
    args = parser.parse_args(argv)

    from evaluator.selection import SelectionError, load_selection
    from evaluator.store import StoreError, open_pool
    from evaluator.tier import load_tier

    try:
        tier = load_tier(args.tier)
        pool = open_pool(args.pool)
        selection = load_selection(args.ids.read_bytes(), pool.index_of)
    except OSError as exc:
        raise SystemExit(f"{args.ids}: {exc.strerror}") from None
    except SelectionError as exc:
        raise SystemExit(f"{args.ids}: {exc}") from None
    except (StoreError, ValueError) as exc:
        raise SystemExit(str(exc)) from None

    from evaluator import distributed
    from evaluator.progress import ProgressFile
    from evaluator.protocol import pretrain_encoder

    ranks = distributed.from_environment()
    progress = StageProgress(enabled=not args.quiet and ranks.is_main)
    report = progress
    if args.progress_file and ranks.is_main:
        watched = ProgressFile(args.progress_file)

        def report(stage: str, done: int, total: int) -> None:
            progress(stage, done, total)
            watched(stage, done, total)

    try:
        result = pretrain_encoder(
            pool=pool, selection=selection, tier=tier, seed=tier.seed if args.seed is None else args.seed,
            cache_dir=args.cache or default_cache_dir(), progress=report,
            device=distributed.device_for(ranks), ranks=ranks,
        )  # fmt: skip
    except (StoreError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    finally:
        progress.close()
        distributed.leave(ranks)
    if ranks.is_main:
        curve_path = result.encoder_path.with_name("loss_curve.json")
        record = {"ranks": ranks.world, "seconds": result.seconds, "cache_hit": result.cache_hit}
        curve_path.write_text(json.dumps({**record, "loss_curve": result.loss_curve}) + "\n")
        print(result.encoder_path)
    return 0


def cmd_normdel(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="delbench normdel", description="NormDEL = sigmoid(mIoU * exp(-alpha * R))."
    )
    parser.add_argument("--miou", type=float, required=True, help="mIoU in [0, 1]")
    parser.add_argument("--ratio", type=float, required=True, help="retained fraction R in (0, 1]")
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args(argv)
    from evaluator.metrics import normdel

    try:
        print(f"{normdel(args.miou, args.ratio, args.alpha):.4f}")
    except ValueError as exc:
        parser.error(str(exc))
    return 0


def cmd_tiers(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="delbench tiers", description="List the protocol tiers and their hashes."
    ).parse_args(argv)
    from evaluator.tier import available_tiers, load_tier

    for name in available_tiers():
        tier = load_tier(name)
        print(
            f"{name:<12} {tier.hash[:16]}  {tier.resolution}px  {tier.pretrain.samples_seen:,} samples seen  {tier.description}"
        )
    return 0


COMMANDS = {
    "synth": cmd_synth,
    "evaluate": cmd_evaluate,
    "pretrain": cmd_pretrain,
    "normdel": cmd_normdel,
    "tiers": cmd_tiers,
}


def main(command: str, argv: list[str]) -> int:
    return COMMANDS[command](argv)
