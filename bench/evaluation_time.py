"""Wall time of one complete evaluation (pretraining + eight finetunes + scoring) per tier, from measured steps.

    .venv/bin/python bench/evaluation_time.py                  # CUDA: paper-fast and paper; CPU: synth-tiny
    .venv/bin/python bench/evaluation_time.py --full           # CPU: also run one whole synth-tiny evaluation
    .venv/bin/python bench/evaluation_time.py --pretrain-from tp.json   # pretraining s/step measured by
                                                                        # bench/pretrain_throughput.py --json

A whole evaluation at the paper tiers is hours, so each stage runs a few steps through the evaluator's own
functions (`evaluator.pretrain.pretrain`, `evaluator.finetune.finetune`, `confusion_on`) on synthetic data of
the tier's shapes (the compute does not depend on pixel values), warm-up steps excluded, and is extrapolated to
the tier's step counts; the arithmetic is printed. On one device the eight finetunes run one after another
(one worker per GPU), so their times add up. Not counted: loading the model and data, saving the encoder (a
few seconds). Test images scored: at synth-tiny the synthetic tasks' test splits; at the paper tiers 20 % of
the datasets' sizes in the DataDEL paper (the hash split's test share), ImageCLEFmed's unlisted size excluded.
`--full` (synth-tiny) runs one real evaluation of a 4,800-frame synthetic pool and prints it beside the estimate.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/...` with no install

from evaluator.cpu_threads import set_default_wait_policy  # noqa: E402

set_default_wait_policy()  # what `delbench` runs with; before torch loads

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.machine import describe  # noqa: E402
from evaluator.finetune import confusion_on, finetune  # noqa: E402
from evaluator.pretrain import build_initial_mae, pretrain  # noqa: E402
from evaluator.store import Task, TaskSplit  # noqa: E402
from evaluator.synth import TASK_PROFILES  # noqa: E402
from evaluator.tier import Tier, load_tier  # noqa: E402

# Sizes of the seven datasets the DataDEL paper lists (ImageCLEFmed's is not given); 20 % of each is its test split.
REAL_SIZES = {"kvasir-instrument": 590, "kvasir-seg": 1000, "etis": 196, "polypgen": 3762, "cvc-300": 60,
              "cvc-clinicdb": 612, "cvc-colondb": 380}  # fmt: skip
TARGETS_S = {"synth-tiny": 3 * 60, "paper-fast": 3600, "paper": 3 * 3600}  # issue 8's goals


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def with_steps(tier: Tier, pretrain_steps: int | None = None, finetune_steps: int | None = None) -> Tier:
    raw = copy.deepcopy(tier.to_dict())
    if pretrain_steps:
        raw["pretrain"].update(samples_seen=tier.pretrain.batch_size * pretrain_steps, checkpoint_every=10**9)
    if finetune_steps:
        raw["finetune"]["steps"] = finetune_steps
    return Tier.from_dict(raw)


class StepClock:
    """A progress callback that times the steps after `warmup` (device synchronized at both ends)."""

    def __init__(self, device: torch.device, warmup: int):
        self.device, self.warmup, self.start, self.end = device, warmup, None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if done == self.warmup or done == total:
            sync(self.device)
            if done == self.warmup:
                self.start = time.perf_counter()
            else:
                self.end = time.perf_counter()

    def per_step(self, total: int) -> float:
        return (self.end - self.start) / (total - self.warmup)


def pretrain_seconds_per_step(tier: Tier, device: torch.device, warmup: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(max(256, tier.pretrain.batch_size), tier.resolution, tier.resolution, 3),
                          dtype=np.uint8)  # fmt: skip
    run = with_steps(tier, pretrain_steps=warmup + steps)
    clock = StepClock(device, warmup)
    with tempfile.TemporaryDirectory() as work:
        pretrain(images=images, indices=np.arange(len(images)), tier=run, seed=0, device=device,
                 work_dir=Path(work), progress=clock, log_every=10**9)  # fmt: skip
    return clock.per_step(warmup + steps)


def finetune_seconds(tier: Tier, device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """(s per finetune step, s per test image scored) at the tier's resolution."""
    rng = np.random.default_rng(0)
    res = tier.resolution

    def split(n: int) -> TaskSplit:
        return TaskSplit(rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8),
                         rng.integers(0, 2, (n, res, res), dtype=np.uint8))  # fmt: skip

    n_test = 4 * tier.finetune.eval_batch_size
    task = Task("timing", "polyp", res, split(4 * tier.finetune.batch_size), split(n_test), {})
    run = with_steps(tier, finetune_steps=warmup + steps)
    clock = StepClock(device, warmup)
    encoder = build_initial_mae(tier, 0).encoder
    finetune(encoder=encoder, task=task, tier=run, seed=0, device=device, progress=clock)
    per_step = clock.per_step(warmup + steps)
    from evaluator.finetune import SegmentationModel

    model = SegmentationModel(encoder, tier.finetune.head_hidden).to(device)
    confusion_on(model, task, tier, device)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    confusion_on(model, task, tier, device)
    sync(device)
    return per_step, (time.perf_counter() - t0) / n_test


def is_synthetic(tier: Tier) -> bool:
    return tier.name.startswith("synth-")  # synth-tiny, synth-small: the synthetic pool's tiers


def test_images(tier: Tier) -> tuple[int, str]:
    if is_synthetic(tier):
        return sum(p.n_test for p in TASK_PROFILES.values()), "the synthetic tasks' test splits"
    return round(0.2 * sum(REAL_SIZES.values())), "20 % of the seven listed datasets"


def full_synthetic(tier: Tier, device: torch.device) -> dict:
    """One real evaluation at a synthetic tier: the demo's 4,800-frame pool, every 10th frame selected."""
    from evaluator.protocol import evaluate
    from evaluator.selection import load_selection
    from evaluator.store import open_pool
    from evaluator.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "pool", seed=0, size=4800, resolution=64)
        pool = open_pool(Path(tmp) / "pool")
        selection = load_selection("\n".join(pool.ids[::10]).encode(), pool.index_of)
        t0 = time.perf_counter()
        doc = evaluate(pool_dir=Path(tmp) / "pool", selection=selection, tasks_dir=None, tier=tier,
                       seed=0, cache_dir=Path(tmp) / "cache", device=device)  # fmt: skip
        doc["timings"]["wall"] = time.perf_counter() - t0
        return doc


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiers", help="comma-separated (default: paper-fast,paper on CUDA; synth-tiny on CPU)"
    )
    parser.add_argument("--steps", type=int, help="timed steps per stage (default 30 on CUDA, 10 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10 on CUDA, 3 on CPU)")
    parser.add_argument("--pretrain-from", type=Path, help="JSON of bench/pretrain_throughput.py --json: reuse its "
                        "DELBench s/step for the tiers it measured instead of pretraining here")  # fmt: skip
    parser.add_argument("--full", action="store_true", help="synthetic tiers: also run one whole evaluation")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    tiers = (args.tiers or ("paper-fast,paper" if cuda else "synth-tiny")).split(",")
    steps = args.steps or (30 if cuda else 10)
    warmup = args.warmup or (10 if cuda else 3)
    measured = {}
    if args.pretrain_from:
        doc = json.loads(args.pretrain_from.read_text())
        measured = {c["tier"]: (c["delbench"]["s_per_step"], f"bench/pretrain_throughput.py, {doc['device']}")
                    for c in doc["cases"]}  # fmt: skip
    print(f"device: {describe(device)}; torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}")

    for tier_name in tiers:
        tier = load_tier(tier_name)
        print(f"\n== {tier.name}: {tier.resolution} px, precision {tier.precision}, pretrain batch "
              f"{tier.pretrain.batch_size} x {tier.pretrain.steps:,} steps, finetune batch {tier.finetune.batch_size} "
              f"x {tier.finetune.steps:,} steps x 8 tasks", flush=True)  # fmt: skip
        if tier.name in measured:
            pre, source = measured[tier.name]
        else:
            pre, source = (
                pretrain_seconds_per_step(tier, device, warmup, steps),
                f"{steps} steps measured here",
            )
        fin, score = finetune_seconds(tier, device, min(warmup, 5), steps)
        n_test, test_note = test_images(tier)
        parts = [
            ("pretrain", f"{tier.pretrain.steps:,} steps x {pre:.5f} s/step ({source})", tier.pretrain.steps * pre),
            ("finetune", f"8 tasks x {tier.finetune.steps:,} steps x {fin:.5f} s/step ({steps} steps measured)",
             8 * tier.finetune.steps * fin),
            ("scoring", f"{n_test:,} test images x {score:.6f} s/image ({test_note})", n_test * score),
        ]  # fmt: skip
        for label, arithmetic, seconds in parts:
            print(f"  {label:<9} {arithmetic} = {seconds:,.0f} s")
        total = sum(seconds for *_, seconds in parts)
        target = TARGETS_S.get(tier.name)
        verdict = f"; target < {target:,} s: {'met' if total < target else 'NOT met'}" if target else ""
        print(f"  total     {total:,.0f} s = {total / 3600:.2f} h{verdict}", flush=True)
        graphed = measured.get(f"{tier.name}+graph")
        if graphed:  # the throughput bench also measured the tier with `cuda_graph` on
            pre_g = tier.pretrain.steps * graphed[0]
            total_g = total - parts[0][2] + pre_g
            print(f"  with the step as one CUDA graph (cuda_graph: true): pretrain {tier.pretrain.steps:,} steps x "
                  f"{graphed[0]:.5f} s/step = {pre_g:,.0f} s; total {total_g:,.0f} s = {total_g / 3600:.2f} h")  # fmt: skip

        if args.full and is_synthetic(tier):
            print(
                "  running one whole evaluation (4,800-frame synthetic pool, every 10th frame selected)...",
                flush=True,
            )
            doc = full_synthetic(tier, device)
            t = doc["timings"]
            print(f"  measured: pretrain {t['pretrain']:,.0f} s + finetunes {t['finetune']:,.0f} s -> total "
                  f"{t['total']:,.0f} s (estimate above: {total:,.0f} s); mean mIoU {doc['mean_miou']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
