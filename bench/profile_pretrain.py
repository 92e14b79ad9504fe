"""Where a pretraining step's time goes: the evaluator's own trainer under torch.profiler, a few steps after
warm-up, with the time split into matmuls, attention, the optimizer and the rest, and (on a GPU) how busy
the device was over the profiled steps' wall time.

    python bench/profile_pretrain.py                          # CUDA: paper-fast; CPU: synth-tiny
    python bench/profile_pretrain.py --tier paper --steps 10 --trace $OUT/paper.json   # + a Chrome trace

Issue 8's MFU goal asks what the missing fraction is spent on. A device that is busy well under 100 % of
the wall time is launch- or host-bound (what CUDA graphs address); a busy device with little time in
matmuls (the patch embedding's convolution included) and attention is bound by elementwise kernels (what
compilation and fusion address). The steps run through `evaluator.pretrain.pretrain` on random uint8
images of the tier's shape, exactly as bench/evaluation_time.py times them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/...` with no install

from evaluator.cpu_threads import set_default_wait_policy  # noqa: E402

set_default_wait_policy()  # what `delbench` runs with; before torch loads

import argparse  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench.evaluation_time import sync, with_steps  # noqa: E402
from bench.graph_outcome import graph_outcomes  # noqa: E402
from bench.graph_outcome import label as graph_label  # noqa: E402
from bench.machine import describe  # noqa: E402
from evaluator.pretrain import pretrain  # noqa: E402
from evaluator.tier import Tier, load_tier  # noqa: E402

# Operator (CPU) and kernel (CUDA) names, first match wins; "other" is elementwise work, norms, copies.
CATEGORIES = [
    ("attention", re.compile(r"flash|fmha|attention|sdpa", re.I)),
    # the patch embedding is a strided convolution: a matmul too
    (
        "matmul",
        re.compile(r"gemm|matmul|aten::mm$|aten::addmm|aten::bmm|aten::linear|cutlass|xmma|nvjet|conv", re.I),
    ),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach", re.I)),
]


def category(name: str) -> str:
    return next((label for label, pattern in CATEGORIES if pattern.search(name)), "other")


class ProfiledSteps:
    """A progress callback that profiles the steps after `warmup`, the device synchronized at both ends."""

    def __init__(self, device: torch.device, warmup: int, trace: Path | None):
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.device, self.warmup, self.trace = device, warmup, trace
        self.profiler = profile(activities=activities)
        self.started = self.wall_s = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done == self.warmup:
            sync(self.device)
            self.profiler.start()
            self.started = time.perf_counter()
        elif done == total and self.wall_s is None:
            sync(self.device)
            self.wall_s = time.perf_counter() - self.started
            self.profiler.stop()
            if self.trace:
                self.profiler.export_chrome_trace(str(self.trace))


def breakdown(events, *, device_type: str) -> tuple[dict[str, float], list[tuple[str, float]], int]:
    """Self time (µs) per category and per name, over the events that ran on `device_type` ("cpu"/"cuda"),
    and how many such events (kernels on CUDA, operator calls on CPU) took any time."""
    per_name: dict[str, float] = {}
    calls = 0
    for event in events:
        on_device = device_type == "cuda" and event.device_type == torch.autograd.DeviceType.CUDA
        if device_type == "cuda" and not on_device:
            continue
        spent = event.self_device_time_total if device_type == "cuda" else event.self_cpu_time_total
        if spent > 0:
            per_name[event.key] = per_name.get(event.key, 0.0) + spent
            calls += event.count
    per_category = {label: 0.0 for label, _ in CATEGORIES} | {"other": 0.0}
    for name, spent in per_name.items():
        per_category[category(name)] += spent
    return per_category, sorted(per_name.items(), key=lambda item: -item[1]), calls


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tier", help="default: paper-fast on CUDA, synth-tiny on CPU")
    parser.add_argument("--warmup", type=int, help="steps before profiling (default 10 on CUDA, 3 on CPU)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--top", type=int, default=15, help="names listed (default 15)")
    parser.add_argument("--trace", type=Path, help="also write a Chrome trace of the profiled steps here")
    parser.add_argument(
        "--graph", action="store_true", help="the tier with its step replayed as a CUDA graph"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    tier = load_tier(args.tier or ("paper-fast" if cuda else "synth-tiny"))
    if args.graph:
        tier = Tier.from_dict({**tier.to_dict(), "cuda_graph": True})
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    total = warmup + args.steps
    print(f"device: {describe(device)}; torch {torch.__version__}")
    print(f"tier {tier.name}: batch {tier.pretrain.batch_size}, {tier.resolution} px, precision {tier.precision}; "
          f"{warmup} warm-up steps, {args.steps} profiled" + (", CUDA graph" if tier.cuda_graph else ""), flush=True)  # fmt: skip

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(max(256, tier.pretrain.batch_size), tier.resolution, tier.resolution, 3),
                          dtype=np.uint8)  # fmt: skip
    steps = ProfiledSteps(device, warmup, args.trace)
    with tempfile.TemporaryDirectory() as work, graph_outcomes() as outcomes:
        pretrain(images=images, indices=np.arange(len(images)), tier=with_steps(tier, pretrain_steps=total),
                 seed=0, device=device, work_dir=Path(work), progress=steps, log_every=10**9)  # fmt: skip

    events = steps.profiler.key_averages()
    per_category, per_name, calls = breakdown(events, device_type="cuda" if cuda else "cpu")
    busy_us = sum(per_category.values())
    wall_us = steps.wall_s * 1e6
    where = "device (kernel) time" if cuda else "CPU self time, all threads"
    print(
        f"\nwall time {steps.wall_s / args.steps * 1e3:.1f} ms/step; {where} {busy_us / args.steps / 1e3:.1f} ms/step"
    )
    if cuda and tier.cuda_graph and graph_label(outcomes):
        print(f"!!{graph_label(outcomes)}: this profile is of the eager step")
    # Launched one by one from Python, each kernel costs the host microseconds: with few FLOPs a kernel (batch
    # 16), kernels per step x a few µs near the wall time per step means the launches set the pace.
    print(f"{calls / args.steps:,.0f} {'kernels' if cuda else 'operator calls'} per step")
    if cuda:
        print(
            f"device busy {busy_us / wall_us:.0%} of the wall time (well under 100 %: launch- or host-bound)"
        )
    print("\n| share | category |\n|---:|---|")
    for label, spent in sorted(per_category.items(), key=lambda item: -item[1]):
        print(f"| {spent / busy_us:6.1%} | {label} |")
    print(f"\n| ms/step | share | category | name (top {args.top}) |\n|---:|---:|---|---|")
    for name, spent in per_name[: args.top]:
        print(f"| {spent / args.steps / 1e3:.2f} | {spent / busy_us:.1%} | {category(name)} | {name[:90]} |")
    if args.trace:
        print(f"\nChrome trace: {args.trace}")
    return {
        "tier": tier.name,
        "wall_s_per_step": steps.wall_s / args.steps,
        "busy_s_per_step": busy_us / args.steps / 1e6,
        "shares": {label: spent / busy_us for label, spent in per_category.items()},
        "graph_captures": outcomes,
        "calls_per_step": calls / args.steps,
    }


if __name__ == "__main__":
    main()
