"""MAE pretraining under a fixed budget of samples seen (README, The protocol).

Every selection gets the same number of optimizer steps, `samples_seen / batch_size`; a smaller selection is
simply passed over more often. Batches, masks and augmentations are pure functions of (seed, step), and a
checkpoint holds model, optimizer and step, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import numpy as np
import torch

from evaluator.augment import random_resized_crop_flip, to_model_input
from evaluator.distributed import SINGLE, Ranks
from evaluator.feed import device_batches
from evaluator.mae import MaskedAutoencoder, build_mae, compile_blocks
from evaluator.progress import ProgressFn
from evaluator.schedule import SampleStream, derived_seed, lr_at
from evaluator.store import save_torch_atomic
from evaluator.tier import Tier

log = logging.getLogger(__name__)


class DivergedError(RuntimeError):
    pass


def param_groups(model: torch.nn.Module, weight_decay: float, lr_scale=None) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms and tokens (1-D parameters), as MAE does.

    `lr_scale(name)` gives a per-parameter learning-rate multiplier (layer-wise decay when finetuning);
    each group's `lr_scale` is applied by the training loop on top of the scheduled rate.
    """
    groups: dict[tuple[bool, float], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            no_decay = p.ndim <= 1 or p.shape[0] == 1
            groups.setdefault((no_decay, lr_scale(name) if lr_scale else 1.0), []).append(p)
    return [
        {"params": params, "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
        for (no_decay, scale), params in sorted(groups.items(), key=lambda kv: kv[0])
    ]


def build_optimizer(groups: list[dict], lr: float, betas, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=device.type in ("cuda", "cpu"))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr * group["lr_scale"])  # read on the device by a captured step (cuda_graph.py)
        else:
            group["lr"] = lr * group["lr_scale"]


def autocast_for(tier: Tier, device: torch.device):
    if tier.precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_initial_mae(tier: Tier, seed: int) -> MaskedAutoencoder:
    """The seeded initial model: the same weights start every pretraining and the no-pretraining floor."""
    torch.manual_seed(derived_seed(seed, "init"))
    return build_mae(tier)


def _initial_or_resumed(tier: Tier, seed: int, device: torch.device, ckpt_path: Path):
    """(model, optimizer, first step, loss curve, loss window) from the checkpoint, or fresh. A checkpoint
    that does not load (truncated by a full disk or a kill mid-write, another tier's) is discarded and the
    stage starts over, rather than failing every later attempt."""
    cfg = tier.pretrain

    def fresh():
        model = build_initial_mae(tier, seed).to(device)
        return model, build_optimizer(param_groups(model, cfg.weight_decay), cfg.peak_lr, cfg.betas, device)

    model, optimizer = fresh()
    if ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, map_location=device, weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            curve = [tuple(p) for p in state["loss_curve"]]
            return model, optimizer, state["step"], curve, tuple(state.get("window", (0.0, 0)))
        except Exception as exc:  # any unreadable file means the same: no usable checkpoint
            log.warning("checkpoint %s does not load (%s: %s); discarded, pretraining starts over",
                        ckpt_path, type(exc).__name__, str(exc)[:200])  # fmt: skip
            ckpt_path.unlink(missing_ok=True)
            model, optimizer = fresh()  # a load that failed half-way may have changed them
    return model, optimizer, 0, [], (0.0, 0)


def step_randoms(
    batch_size: int, patches: int, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A step's random draws, in the protocol's order: crops and flips [N, 5], then masking noise [N, L]."""
    crops = torch.rand(batch_size, 5, device=device, generator=generator)
    return crops, torch.rand(batch_size, patches, device=device, generator=generator)


def mae_update(
    model: MaskedAutoencoder,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    crops: torch.Tensor,
    noise: torch.Tensor,
    tier: Tier,
    autocast=None,
) -> torch.Tensor:
    """Forward, backward and optimizer step on a uint8 batch [N, H, W, 3] on the device, given the step's
    random draws; returns the loss. No host sync and no random generator: a CUDA graph can capture it."""
    cfg = tier.pretrain
    x = to_model_input(batch, batch.device)
    x = random_resized_crop_flip(x, tier.resolution, cfg.crop_scale, None, u=crops)
    with autocast if autocast is not None else autocast_for(tier, x.device):
        loss, _, _, _ = model(x, cfg.mask_ratio, noise=noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def mae_step(
    model: MaskedAutoencoder,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    tier: Tier,
    generator: torch.Generator,
) -> torch.Tensor:
    """One optimizer step on a uint8 batch [N, H, W, 3] already on the device; returns the loss (no host sync).

    All randomness comes from `generator` (`step_randoms`), drawn before the step rather than inside the
    model, so that compiled blocks and CUDA graphs see plain tensors, not a generator.
    """
    crops, noise = step_randoms(len(batch), model.encoder.grid**2, batch.device, generator)
    return mae_update(model, optimizer, batch, crops, noise, tier)


def pretrain(
    *,
    images: np.ndarray,
    indices: np.ndarray,
    tier: Tier,
    seed: int,
    device: torch.device,
    work_dir: Path,
    progress: ProgressFn | None = None,
    log_every: int | None = None,
    ranks: Ranks = SINGLE,
) -> tuple[MaskedAutoencoder, list[tuple[int, float]]]:
    """Pretrain an MAE on `images[indices]` for the tier's budget; returns the model and its loss curve.

    `images` is the pool's uint8 [N, H, W, 3] array (memory-mapped); only the selected rows are read.
    `work_dir/checkpoint.pt` is written every `checkpoint_every` steps and resumed from if present.
    The loss curve holds the mean loss of every `log_every` steps (default: 100 points over the run); it is
    the only place the loop reads a value back from the device, so on a GPU the host runs ahead freely.
    Under several `ranks` (evaluator.distributed) each process takes its share of every step; the main rank
    writes the checkpoints, and every rank resumes from them, whatever the number of ranks that wrote them.
    """
    cfg = tier.pretrain
    total = cfg.steps
    warmup = int(total * cfg.warmup_fraction)
    ckpt_path = work_dir / "checkpoint.pt"
    model, optimizer, start, curve, window = _initial_or_resumed(tier, seed, device, ckpt_path)
    if tier.compile and device.type == "cuda":
        compile_blocks(model)
    share = ranks.share(cfg.batch_size)
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        patches = model.encoder.grid**2

        def step_fn(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            crops, noise = step_randoms(cfg.batch_size, patches, device, generator)  # the whole step's draws
            return mae_update(trained, optimizer, batch, crops[share], noise[share], tier)

    elif tier.cuda_graph and device.type == "cuda":
        from evaluator.cuda_graph import GraphedMAEStep, capturable_optimizer

        capturable_optimizer(optimizer, device)
        step_fn = GraphedMAEStep(model, optimizer, tier, device)
    else:
        step_fn = functools.partial(mae_step, model, optimizer, tier=tier)

    stream = SampleStream(len(indices), cfg.batch_size, derived_seed(seed, "pretrain-order"))
    # Sorted rows: the memory-mapped store is read in file order (the protocol's batches are sets).
    row_batches = (np.sort(indices[stream.batch(step)])[share] for step in range(start, total))
    log_every = log_every or max(1, total // 100)
    window_sum, window_n = torch.tensor(window[0], device=device), window[1]
    model.train()
    batches = device_batches(images, row_batches, batch_size=share.stop - share.start, device=device)
    with contextlib.closing(batches):
        for step, batch in zip(range(start, total), batches, strict=True):
            set_lr(optimizer, lr_at(step, total, cfg.peak_lr, warmup, cfg.min_lr))
            generator = torch.Generator(device=device).manual_seed(derived_seed(seed, "pretrain-step", step))
            window_sum += step_fn(batch, generator=generator)
            window_n += 1
            done = step + 1
            if done % log_every == 0 or done == total:
                mean = float(ranks.mean(window_sum)) / window_n  # the whole batch's, over the ranks
                if not np.isfinite(mean):
                    raise DivergedError(f"pretraining diverged at step {done}: loss {mean}")
                curve.append((done, mean))
                window_sum.zero_()
                window_n = 0
            if done % cfg.checkpoint_every == 0 and done < total:
                # the loss window in progress, as the whole batch's (a collective: every rank takes part),
                # so that a resumed curve is the uninterrupted one, whatever the number of ranks resuming
                window_now = float(ranks.mean(window_sum))
                if ranks.is_main:
                    state = {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": done,
                        "loss_curve": curve,
                        "window": (window_now, window_n),
                    }
                    save_torch_atomic(state, ckpt_path)
            if progress and ranks.is_main:
                progress("pretrain", done, total)
    ranks.barrier()  # no rank leaves (and reads the main rank's files) before the last step is everyone's
    return model, curve
