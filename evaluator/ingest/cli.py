"""`delbench ingest pool|task` and `delbench verify`.

Exit codes: 0 done; 1 the data has problems (unreadable files under `--strict`, problems found by verify);
2 bad input (a missing folder, an unknown name, a layout that does not match), with a message naming the path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluator.ingest import IngestError, UnreadableFiles
from evaluator.ingest.decoding import default_workers
from evaluator.ingest.pool_sources import POOL_SOURCES
from evaluator.store import TASK_NAMES, StoreError

SHOWN_PER_LIST = 50  # longer lists of files are cut in the terminal; the store's JSON keeps them all


def _resolutions(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated pixel sizes like 64,224, got {text!r}"
        ) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _root_override(text: str) -> tuple[str, Path]:
    key, sep, folder = text.partition("=")
    if not sep or not key or not folder:
        raise argparse.ArgumentTypeError(f"expected SOURCE=DIR or TASK=DIR, got {text!r}")
    return key, Path(folder)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resolutions",
        type=_resolutions,
        metavar="R1,R2",
        help="square sizes to store, e.g. 64,224 (default: every tier's; adding to a pool: the pool's)",
    )
    parser.add_argument(
        "--workers", type=_positive, default=default_workers(), help="decoding processes (default: all cores)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail, writing nothing, if any file cannot be read"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)"
    )


def _ingest_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delbench ingest",
        description="Turn a dataset download, in its published layout, into a DELBench pool or task store.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="{pool,task}")
    pool = kinds.add_parser("pool", help="add one pool source to a pool (repeat for each source)")
    pool.add_argument("--source", required=True, choices=list(POOL_SOURCES), help="which download DIR holds")
    pool.add_argument("dir", type=Path, metavar="DIR", help="the download's top folder")
    pool.add_argument(
        "--into", required=True, type=Path, metavar="POOL", help="the pool folder (created or extended)"
    )
    _common(pool)
    task = kinds.add_parser("task", help="ingest one of the eight downstream segmentation sets")
    task.add_argument(
        "name", choices=list(TASK_NAMES), metavar="NAME", help=f"one of: {', '.join(TASK_NAMES)}"
    )
    task.add_argument("dir", type=Path, metavar="DIR", help="the download's top folder")
    task.add_argument(
        "--into", required=True, type=Path, metavar="TASKS", help="the tasks folder (NAME/ is replaced)"
    )
    _common(task)
    return parser


def _verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delbench verify",
        description="Check a pool or tasks folder: arrays complete, masks binary, source files unchanged (re-hashed).",
    )
    parser.add_argument(
        "path", type=Path, metavar="POOL|TASKS", help="a pool folder, a tasks folder or one task's folder"
    )
    parser.add_argument(
        "--root",
        type=_root_override,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="where a source's or task's download lives now, if it moved since the ingest (repeatable)",
    )
    parser.add_argument("--workers", type=_positive, default=default_workers(), help="hashing threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _listing(title: str, lines: list[str], full_list: str = "") -> list[str]:
    out = [f"{title}:"] + [f"  {line}" for line in lines[:SHOWN_PER_LIST]]
    if len(lines) > SHOWN_PER_LIST:
        out.append(f"  … and {len(lines) - SHOWN_PER_LIST:,} more{full_list}")
    return out


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def _ingest(argv: list[str]) -> int:
    from evaluator.ingest.pool import ingest_pool
    from evaluator.ingest.task import ingest_task

    args = _ingest_parser().parse_args(argv)
    progress = False if args.no_progress else None
    options = {
        "resolutions": args.resolutions,
        "workers": args.workers,
        "strict": args.strict,
        "progress": progress,
    }
    if args.kind == "pool":
        report = ingest_pool(args.source, args.dir, args.into, **options)
        rate = report.added / report.seconds if report.seconds else 0.0
        lines = [
            f"{report.source}: {report.added:,} images from {report.root} ({_counts(report.by_part)}) "
            f"in {report.seconds:.1f} s ({rate:.0f} images/s, {args.workers} worker(s))"
        ]
        if report.replaced:
            lines.append(f"replaced the pool's {report.replaced:,} earlier {report.source} records")
        full = f" (all in {report.pool / 'pool.json'} under sources.{report.source}.skipped)"
        what = f"pool {report.pool}: {report.size:,} images"
        lines.append(
            f"{what} ({_counts(report.source_sizes)}); resolutions {', '.join(map(str, report.resolutions))}"
        )
    else:
        report = ingest_task(args.name, args.dir, args.into, **options)
        lines = [
            f"{report.name}: {report.counts['train']:,} train + {report.counts['test']:,} test from {report.root} "
            f"({_counts(report.by_part)}) in {report.seconds:.1f} s",
            f"split: {report.split_rule}; resolutions {', '.join(map(str, report.resolutions))}; written to {report.task}",
        ]
        if report.empty_masks:
            lines.append(f"note: {report.empty_masks:,} mask(s) have no foreground pixel")
        full = f" (all in {report.task / 'task.json'} under skipped)"
    if report.skipped:
        n = len(report.skipped)
        lines += _listing(f"skipped {n:,} unreadable file(s)", [f"{p}: {e}" for p, e in report.skipped], full)
    lines += [f"note: {note}" for note in report.notes]
    print("\n".join(lines))
    return 0


def _verify(argv: list[str]) -> int:
    from evaluator.ingest.verify import verify

    args = _verify_parser().parse_args(argv)
    report = verify(
        args.path, roots=dict(args.root), workers=args.workers, progress=False if args.no_progress else None
    )
    lines = [
        f"verify {report.kind} {report.target}: {report.arrays_checked} array file(s) loaded, {report.files_checked:,} source file(s) re-hashed"
    ]
    lines += [f"note: {note}" for note in report.notes]
    if report.problems:
        lines += _listing(f"{len(report.problems):,} problem(s)", report.problems)
        print("\n".join(lines))
        return 1
    lines.append("OK")
    print("\n".join(lines))
    return 0


def main(command: str, argv: list[str]) -> int:
    try:
        if command == "ingest":
            return _ingest(argv)
        if command == "verify":
            return _verify(argv)
    except UnreadableFiles as exc:
        lines = [f"{p}: {e}" for p, e in exc.failures]
        print("\n".join(_listing(f"delbench {command}: error: --strict: {exc}", lines)), file=sys.stderr)
        return 1
    except (IngestError, StoreError) as exc:
        raise SystemExit(str(exc)) from None
    raise ValueError(f"evaluator.ingest.cli handles `ingest` and `verify`, not {command!r}")
