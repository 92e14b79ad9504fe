"""MAE pretraining throughput: DELBench's trainer against a plain MAE-style reference, side by side in one run.

    .venv/bin/python bench/pretrain_throughput.py            # CUDA: paper (batch 16) and paper-fast (batch 200)
                                                             # CPU: synth-tiny (batch 64)
    .venv/bin/python bench/pretrain_throughput.py --quick    # fewer steps (a smoke run)

DELBench's side is the real `evaluator.pretrain.pretrain` on a uint8 memory-mapped store (augmentation on the
device, the tier's precision and compile settings). The reference (bench/reference_mae.py) trains the same
model definition the way the public MAE code does: a DataLoader whose workers decode JPEG bytes with PIL and
augment each sample on the CPU, eager, fp16 autocast + gradient scaler on CUDA (fp32 on CPU), torch's
default AdamW, `loss.item()` and a synchronize every step. Both read the same synthetic frames (DELBench's
generator, rendered at the tier's resolution): JPEG-encoded for the reference, decoded into the store for
DELBench. Real endoscopy frames are larger JPEGs than these, which would only slow the reference down.

Timing: both run warm-up steps first (compilation, allocator, DataLoader start-up: excluded), then
alternate timed rounds of `--steps` steps, DELBench then reference, `--rounds` times; each round ends with
a device synchronize. The reference is stepped from inside DELBench's progress callback, so DELBench's loop
runs unmodified. images/s is the median over rounds.

Model FLOPs utilisation (MFU) = images/s x model FLOPs per image / peak, where the peak is measured here: the
best of a few rounds of 8192^3 bf16 matmuls on CUDA (2048^3 fp32 on CPU). Model FLOPs per image, counted
analytically (`mae_flops`): for a ViT block of width d over T tokens, 24 d^2 T (qkv, projection and a 4x MLP:
2 FLOPs per multiply-add) + 4 d T^2 (scores and weighted sum); the encoder runs on the kept 25 % of the
patches + CLS, the decoder on all patches + CLS; plus the patch embedding (all patches), the decoder
embedding and the pixel prediction. Training = 3 x forward (backward ~ 2 x forward), the usual convention
(PaLM's MFU); norms, softmax, GELU and the loss are not counted.
"""

from __future__ import annotations

import os

# On CPU the reference's DataLoader workers share the cores with the training threads; spinning OpenMP threads
# (torch's default) would starve them and flatter DELBench. Sleeping ones keep the comparison fair
# (bench/cpu_threads.py). Read when torch loads, hence here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.evaluation_time import sync  # noqa: E402
from bench.graph_outcome import graph_outcomes  # noqa: E402
from bench.graph_outcome import label as graph_label  # noqa: E402
from bench.machine import describe  # noqa: E402
from bench.reference_mae import ReferenceTrainer, encode_images  # noqa: E402
from evaluator.pretrain import pretrain  # noqa: E402
from evaluator.store import write_json_atomic  # noqa: E402
from evaluator.synth import render_video  # noqa: E402
from evaluator.tier import Tier, load_tier  # noqa: E402

# (tier, warm-up steps, timed steps per round) by device; --steps / --warmup override.
CASES = {
    "cuda": [("paper", 20, 50), ("paper-fast", 8, 15)],
    "cpu": [("synth-tiny", 3, 8)],
}


def mae_flops(tier: Tier) -> dict[str, float]:
    """Forward FLOPs per image of the tier's MAE, by part (see the module docstring), and training = 3 x forward."""
    m, p = tier.model, tier.model.patch_size
    patches = (tier.resolution // p) ** 2
    kept = int(patches * (1 - tier.pretrain.mask_ratio))

    def blocks(width: int, tokens: int, depth: int) -> float:
        per_token = 2 * width * width * (4 + 2 * m.mlp_ratio)  # qkv 3d^2 + proj d^2 + MLP 2 * ratio * d^2
        return depth * (tokens * per_token + 4 * width * tokens * tokens)

    parts = {
        "patch_embed": patches * 2 * (3 * p * p) * m.embed_dim,
        "encoder": blocks(m.embed_dim, kept + 1, m.depth),
        "decoder_embed": (kept + 1) * 2 * m.embed_dim * m.decoder_embed_dim,
        "decoder": blocks(m.decoder_embed_dim, patches + 1, m.decoder_depth),
        "pred": (patches + 1) * 2 * m.decoder_embed_dim * (3 * p * p),
    }
    parts["forward"] = sum(parts.values())
    parts["train"] = 3 * parts["forward"]
    return parts


def with_fields(tier: Tier, **fields) -> Tier:
    raw = copy.deepcopy(tier.to_dict())
    raw.update(fields)
    return Tier.from_dict(raw)


def variants(tier: Tier, device: torch.device, graph: bool) -> list[tuple[str, Tier]]:
    """The tier as it is and, on CUDA unless `graph` is off or the tier already does it, with the whole step
    replayed as one CUDA graph (label suffix "+graph"): measured side by side in the same rounds."""
    cases = [("", tier)]
    if graph and device.type == "cuda" and not tier.cuda_graph:
        cases.append(("+graph", with_fields(tier, cuda_graph=True)))
    return cases


def matmul_peak(device: torch.device) -> tuple[float, str]:
    """Best sustained matmul FLOP/s measured here: bf16 8192^3 on CUDA, fp32 2048^3 on CPU."""
    n, dtype, reps = (8192, torch.bfloat16, 20) if device.type == "cuda" else (2048, torch.float32, 2)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best, f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} {n}^3 matmul"


def synthetic_frames(n: int, resolution: int) -> np.ndarray:
    """n frames of DELBench's synthetic endoscopy videos at `resolution`, uint8 [n, res, res, 3]."""
    frames: list[np.ndarray] = []
    video = 0
    while len(frames) < n:
        frames += [frame for frame, _ in render_video(0, video, "synth-hyperkvasir", 24, resolution)]
        video += 1
    return np.stack(frames[:n])


def bench_tier(
    tier: Tier,
    store: np.ndarray,
    blobs: list[bytes],
    device,
    warmup: int,
    steps: int,
    rounds: int,
    workers: int,
    work_dir: Path,
) -> dict:
    """Interleaved timed rounds of DELBench's `pretrain` and the reference at the tier's batch size."""
    total = warmup + rounds * steps
    raw = copy.deepcopy(tier.to_dict())
    raw["pretrain"].update(samples_seen=tier.pretrain.batch_size * total, checkpoint_every=10**9)
    run_tier = Tier.from_dict(raw)
    reference = ReferenceTrainer(blobs=blobs, tier=run_tier, seed=0, device=device, num_workers=workers)
    times: dict[str, list[float]] = {"delbench": [], "reference": []}
    ref_losses: list[float] = []
    round_ends = {warmup + r * steps for r in range(rounds + 1)}
    clock = {"start": 0.0}

    def on_step(stage: str, done: int, total_steps: int) -> None:
        # Called by DELBench's loop after each step: at a round's end, close DELBench's round, run the reference's.
        if done not in round_ends:
            return
        sync(device)
        if done > warmup:
            times["delbench"].append(time.perf_counter() - clock["start"])
            print(
                f"    delbench  round {len(times['delbench'])}: {steps} steps in {times['delbench'][-1]:.2f} s",
                flush=True,
            )
        if done == warmup:
            ref_losses.extend(reference.run(warmup))
            sync(device)
        if done < total_steps:
            t0 = time.perf_counter()
            ref_losses.extend(reference.run(steps))
            sync(device)
            times["reference"].append(time.perf_counter() - t0)
            print(
                f"    reference round {len(times['reference'])}: {steps} steps in {times['reference'][-1]:.2f} s",
                flush=True,
            )
        clock["start"] = time.perf_counter()

    started = time.perf_counter()
    try:
        _, curve = pretrain(
            images=store,
            indices=np.arange(len(store)),
            tier=run_tier,
            seed=0,
            device=device,
            work_dir=work_dir,
            progress=on_step,
            log_every=10**9,
        )
    finally:
        reference.close()
    batch = tier.pretrain.batch_size
    out = {
        "tier": tier.name,
        "batch": batch,
        "steps_per_round": steps,
        "rounds": rounds,
        "warmup": warmup,
        "wall_s": time.perf_counter() - started,
        "delbench_mean_loss": curve[-1][1],
        "reference_mean_loss": statistics.fmean(ref_losses),
    }
    for name, rounds_s in times.items():
        per_step = statistics.median(rounds_s) / steps
        out[name] = {"s_per_step": per_step, "images_per_s": batch / per_step, "rounds_s": rounds_s}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, help="timed steps per round (default: per case)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up steps (default: per case)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds per trainer, alternating (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of a few steps")
    parser.add_argument(
        "--tiers", help="comma-separated tiers (default: paper,paper-fast on CUDA; synth-tiny on CPU)"
    )
    parser.add_argument(
        "--images", type=int, default=512, help="synthetic frames in the data set (default 512)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(10, os.cpu_count() or 1),
        help="reference DataLoader workers (default min(10, CPUs): MAE's default is 10)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--no-graph",
        action="store_true",
        help="CUDA: only each tier as it is, not also its CUDA-graph variant",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the figures here (bench/evaluation_time.py reads it)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = CASES["cuda" if device.type == "cuda" else "cpu"]
    if args.tiers:
        defaults = {name: (w, s) for name, w, s in CASES["cuda"] + CASES["cpu"]}
        cases = [(name, *defaults.get(name, (5, 10))) for name in args.tiers.split(",")]
    rounds = 2 if args.quick else args.rounds

    started = time.perf_counter()
    name = describe(device)
    print(f"device: {name}; torch {torch.__version__}; reference DataLoader workers: {args.workers}")
    peak, peak_what = matmul_peak(device)
    print(f"measured matmul peak ({peak_what}): {peak / 1e12:.3f} TFLOP/s", flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="delbench-bench-") as tmp:
        frames: dict[int, tuple[np.ndarray, list[bytes]]] = {}
        for tier_name, warmup, steps in cases:
            tier = load_tier(tier_name)
            if args.quick:
                warmup, steps = min(warmup, 5), max(2, steps // 4)
            warmup, steps = args.warmup or warmup, args.steps or steps
            if tier.resolution not in frames:
                t0 = time.perf_counter()
                images = synthetic_frames(args.images, tier.resolution)
                np.save(Path(tmp) / f"r{tier.resolution}.npy", images)
                store = np.load(Path(tmp) / f"r{tier.resolution}.npy", mmap_mode="r")
                frames[tier.resolution] = (store, encode_images(images, "JPEG", quality=90))
                size = sum(map(len, frames[tier.resolution][1])) / len(images)
                print(
                    f"data: {len(images)} frames at {tier.resolution} px, JPEG {size / 1e3:.1f} kB each "
                    f"({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
            store, blobs = frames[tier.resolution]
            flops = mae_flops(tier)
            print(
                f"\n== {tier.name}: batch {tier.pretrain.batch_size}, {tier.resolution} px, precision {tier.precision}, "
                f"compile {tier.compile and device.type == 'cuda'}; {flops['train'] / 1e9:.2f} GFLOP per image "
                f"(forward {flops['forward'] / 1e9:.2f}: encoder {flops['encoder'] / 1e9:.2f}, decoder "
                f"{flops['decoder'] / 1e9:.2f}); {warmup} warm-up + {rounds} x {steps} steps each",
                flush=True,
            )
            for suffix, variant in variants(tier, device, graph=not args.no_graph):
                label = tier.name + suffix
                if suffix:
                    print(f"-- {label}: the same tier with the step replayed as one CUDA graph", flush=True)
                work = Path(tmp) / label
                work.mkdir()
                with graph_outcomes() as outcomes:
                    r = bench_tier(variant, store, blobs, device, warmup, steps, rounds, args.workers, work)
                if variant.cuda_graph and device.type == "cuda":  # a failed capture trained eagerly: say so
                    label += graph_label(outcomes)
                r["tier"], r["cuda_graph"] = label, variant.cuda_graph
                r["train_flops_per_image"] = flops["train"]
                for side in ("delbench", "reference"):
                    r[side]["mfu"] = r[side]["images_per_s"] * flops["train"] / peak
                r["ratio"] = r["delbench"]["images_per_s"] / r["reference"]["images_per_s"]
                results.append(r)
                print_case(r)
                if args.json:  # after every case: a run cut off at a time limit keeps what it measured
                    write_json(args.json, name, peak, peak_what, results)
            if device.type == "cuda":
                torch.compiler.reset()
                torch.cuda.empty_cache()

    print("\n== summary (images/s: median over rounds; MFU against the measured matmul peak)")
    print(
        f"{'tier':<18} {'batch':>5} {'DELBench img/s':>15} {'MFU':>6} {'reference img/s':>16} {'MFU':>6} {'ratio':>6}"
    )
    for r in results:
        d, ref = r["delbench"], r["reference"]
        print(
            f"{r['tier']:<18} {r['batch']:>5} {d['images_per_s']:>15,.1f} {d['mfu']:>6.1%} "
            f"{ref['images_per_s']:>16,.1f} {ref['mfu']:>6.1%} {r['ratio']:>5.2f}x"
        )
    print(f"device: {name}; total wall time {time.perf_counter() - started:.0f} s")
    return 0


def write_json(path: Path, device: str, peak: float, peak_what: str, results: list[dict]) -> None:
    doc = {
        "device": device,
        "torch": torch.__version__,
        "peak_flops": peak,
        "peak": peak_what,
        "cases": results,
    }
    write_json_atomic(path, doc)


def print_case(r: dict) -> None:
    for side in ("delbench", "reference"):
        s = r[side]
        print(
            f"  {side:<9} {s['images_per_s']:>10,.1f} images/s  ({s['s_per_step'] * 1e3:.2f} ms/step)  MFU {s['mfu']:.1%}"
        )
    print(
        f"  ratio DELBench / reference: {r['ratio']:.2f}x   (mean loss over the run: DELBench {r['delbench_mean_loss']:.3f}, "
        f"reference {r['reference_mean_loss']:.3f}; wall {r['wall_s']:.0f} s)",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
