"""How torch's CPU threads wait, side by side: the synth-tiny MAE step under OpenMP settings, one process each.

    .venv/bin/python bench/cpu_threads.py              # 3 rounds of the settings, interleaved
    .venv/bin/python bench/cpu_threads.py --busy 2     # the same with 2 busy processes sharing the cores

torch's CPU thread pool (libgomp) spins while its threads wait. On cores that other processes also use,
spinning threads take turns with the work they wait for; `OMP_WAIT_POLICY=PASSIVE` makes them sleep at once,
which costs time on free cores; `GOMP_SPINCOUNT=10000` spins briefly, then sleeps. The policy is read when
torch loads, so each setting runs in a fresh process; rounds alternate between settings so that the machine's
load falls on all of them alike. `delbench` and the test suite use GOMP_SPINCOUNT=10000 unless a policy is
set (evaluator/cpu_threads.py). Numbers are unchanged by the setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SETTINGS = {
    "2 threads, spinning (OpenMP default)": ({}, 2),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "2 threads, GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, 2),
    "1 thread, spinning": ({}, 1),
    "1 thread, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}

CHILD = """
import sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from evaluator.tier import load_tier
from evaluator.pretrain import build_initial_mae, build_optimizer, mae_step, param_groups
tier = load_tier("synth-tiny")
model = build_initial_mae(tier, 0)
opt = build_optimizer(param_groups(model, 0.05), tier.pretrain.peak_lr, tier.pretrain.betas, torch.device("cpu"))
batch = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 64, 64, 3), dtype=np.uint8))
step = lambda s: mae_step(model, opt, batch, tier, torch.Generator().manual_seed(s))
step(0); step(1)
t0 = time.perf_counter()
for s in range(int(sys.argv[2])):
    step(s)
print((time.perf_counter() - t0) / int(sys.argv[2]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps per process (after 2 warm-up steps)"
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="busy-looping processes to run meanwhile (contention)"
    )
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        return measure(args)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def measure(args) -> int:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {args.busy} busy processes started; "
          "synth-tiny MAE step, batch 64")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (extra, threads) in SETTINGS.items():
            env = {
                k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
            } | extra
            out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(args.steps)], cwd=repo, env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            times[name].append(float(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(times["2 threads, spinning (OpenMP default)"])
    for name, values in times.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v * 1e3:.0f}" for v in values)
        print(
            f"  {name:<38} {median * 1e3:7.0f} ms/step median (rounds: {rounds})  {base / median:5.2f}x the default"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
