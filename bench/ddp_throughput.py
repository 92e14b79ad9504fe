"""Data-parallel pretraining throughput: the same pretraining under 1 and under 2 (or --ranks) torchrun
ranks on this machine, side by side in one run, and the scaling ratio.

    .venv/bin/python bench/ddp_throughput.py [--tier synth-tiny] [--steps 40] [--ranks 1,2] [--rounds 3]

Each run pretrains the tier's model for --steps steps of its global batch on a random 5 % selection of the
pool (a fresh cache each time, so nothing is reused) and reports the stage's own seconds (pool loading
included, start-up of the launcher not). On CPU the ranks share the machine's cores (torchrun gives each
one thread when there are several), so the ratio says what the gradient all-reduce costs; on a GPU host
each rank has a GPU of its own and the ratio is the speed-up per GPU count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(ranks: int, pool: Path, ids: Path, tier: Path, cache: Path, port: int) -> dict:
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
            "--master_port", str(port), "-m", "delbench", "pretrain", "--pool", str(pool), "--ids", str(ids),
            "--tier", str(tier), "--cache", str(cache), "--quiet"]  # fmt: skip
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    (path,) = cache.glob("encoders/*/loss_curve.json")
    return json.loads(path.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tier", default="synth-tiny")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", type=Path, help="default: a fresh synthetic pool at the tier's resolution")
    args = parser.parse_args()

    from evaluator.baselines.methods import Features, Options, select
    from evaluator.store import open_pool
    from evaluator.synth import generate
    from evaluator.tier import load_tier

    tier = load_tier(args.tier)
    work = Path(tempfile.mkdtemp(prefix="delbench-ddp-"))
    pool_dir = args.pool or work / "pool"
    if args.pool is None:
        generate(pool_dir, seed=0, size=2400, resolution=tier.resolution)
    pool = open_pool(pool_dir)
    chosen = select("random", Features(size=pool.size), Options(ratio=0.05, seed=0)).indices
    ids = work / "ids.txt"
    ids.write_text("\n".join(pool.ids[i] for i in chosen) + "\n")
    raw = tier.to_dict()
    raw["pretrain"].update(samples_seen=args.steps * tier.pretrain.batch_size, checkpoint_every=10**9)
    tier_path = work / "tier.json"
    tier_path.write_text(json.dumps(raw))
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{tier.name}: {args.steps} steps of batch {tier.pretrain.batch_size} on {device}")
    counts = [int(r) for r in args.ranks.split(",")]
    times: dict[int, list[float]] = {n: [] for n in counts}
    for round_ in range(args.rounds):  # alternating, so that a change in the machine's load hits all alike
        for ranks in counts:
            cache = work / f"cache-{ranks}-{round_}"
            times[ranks].append(run(ranks, pool_dir, ids, tier_path, cache, free_port())["seconds"])
    first = counts[0]
    for ranks in counts:
        median = statistics.median(times[ranks])
        print(f"  {ranks} rank{'s' if ranks > 1 else ''}: {median:7.1f} s (median of {args.rounds}), "
              f"{args.steps * tier.pretrain.batch_size / median:7.1f} samples/s, "
              f"speed-up {statistics.median(times[first]) / median:.2f}x over {first}", flush=True)  # fmt: skip
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
