"""A plain MAE pretraining loop, written the way the public MAE code trains: the reference DELBench is measured
against (bench/pretrain_throughput.py) and checked against (tests/test_perf_equivalence.py).

Written for DELBench after the structure of facebookresearch/mae's `main_pretrain.py` and
`engine_pretrain.py`, not copied from them. What makes it the usual way:
- a torch DataLoader (worker processes, pinned memory) whose Dataset decodes each image's encoded bytes with
  PIL and augments it on the CPU, one sample at a time: RandomResizedCrop (scale from the tier, bicubic, as
  MAE configures torchvision's) and a horizontal flip, then to a float tensor and ImageNet normalisation;
- the model run eagerly; on CUDA fp16 autocast with a gradient scaler (MAE's `NativeScaler`), on CPU fp32;
- torch's default AdamW (not fused), the learning rate set by hand every iteration;
- every step: the loss read back (`loss.item()`, checked finite), the gradients unscaled and their norm
  computed (as MAE's scaler does to log it), and `torch.cuda.synchronize()`.

The protocol is DELBench's so that the two trainers can be compared: the same model definition and seeded
initial weights (`build_initial_mae`), the same batches (the tier's seeded order, `SampleStream`), the same
schedule, optimiser settings and mask ratio. Only the implementation differs, and the random draws: crops,
flips and masks come from their own generators, so the two loss curves agree within noise, not bit for bit.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from evaluator.augment import MEAN, STD
from evaluator.pretrain import build_initial_mae
from evaluator.schedule import SampleStream, derived_seed, lr_at
from evaluator.tier import Tier

_MEAN = np.array(MEAN, dtype=np.float32)
_STD = np.array(STD, dtype=np.float32)


def encode_images(images: np.ndarray, fmt: str = "JPEG", quality: int = 90) -> list[bytes]:
    """uint8 [N, H, W, 3] -> one encoded file's bytes per image (JPEG for the benchmark, PNG for exact pixels)."""
    blobs = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(image)).save(
            buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {})
        )
        blobs.append(buf.getvalue())
    return blobs


def random_resized_crop_box(
    rng: np.random.Generator, width: int, height: int, scale: tuple[float, float], ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop parameters: (left, top, w, h), ten tries, then a centre crop."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class EncodedImages(torch.utils.data.Dataset):
    """Encoded image files in memory; an item is (index, augmentation seed) -> normalised float [3, size, size]."""

    def __init__(self, blobs: Sequence[bytes], size: int, scale: tuple[float, float]):
        self.blobs = blobs
        self.size = size
        self.scale = scale

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        index, aug_seed = key
        rng = np.random.default_rng(aug_seed)
        img = Image.open(io.BytesIO(self.blobs[index])).convert("RGB")
        left, top, w, h = random_resized_crop_box(rng, img.width, img.height, self.scale)
        img = img.resize((self.size, self.size), Image.BICUBIC, box=(left, top, left + w, top + h))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = (np.asarray(img, dtype=np.float32) / 255.0 - _MEAN) / _STD
        return torch.from_numpy(x.transpose(2, 0, 1).copy())


class TierBatches(torch.utils.data.Sampler):
    """The tier's batches (SampleStream, DELBench's seeded order) as lists of (index, augmentation seed)."""

    def __init__(self, n: int, batch_size: int, seed: int, steps: int, aug_seed: int):
        self.stream = SampleStream(n, batch_size, derived_seed(seed, "pretrain-order"))
        self.steps = steps
        self.aug_seed = aug_seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.steps):
            rows = np.sort(self.stream.batch(step))
            yield [(int(i), derived_seed(self.aug_seed, step, k)) for k, i in enumerate(rows)]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or p.shape[0] == 1 else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


class ReferenceTrainer:
    """The reference loop, advanced a number of steps at a time (`run(n)`), so a benchmark can interleave it.

    The schedule spans `steps` (default: the tier's step count). `amp`: fp16 autocast with a gradient scaler
    (default: on CUDA). `num_workers`: DataLoader worker processes (MAE's default is 10).
    """

    def __init__(
        self,
        *,
        blobs: Sequence[bytes],
        tier: Tier,
        seed: int,
        device: torch.device,
        steps: int | None = None,
        num_workers: int = 0,
        amp: bool | None = None,
        aug_seed: int = 0,
    ):
        self.tier, self.device = tier, device
        self.total = tier.pretrain.steps if steps is None else steps
        self.amp = device.type == "cuda" if amp is None else amp
        self.model = build_initial_mae(tier, seed).to(device)
        torch.manual_seed(derived_seed(seed, "reference-masks"))
        self.loader = torch.utils.data.DataLoader(
            EncodedImages(blobs, tier.resolution, tier.pretrain.crop_scale),
            batch_sampler=TierBatches(len(blobs), tier.pretrain.batch_size, seed, self.total, aug_seed),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        self._loop = self._steps()

    def run(self, n: int) -> list[float]:
        """Train `n` more steps; returns their losses."""
        return [next(self._loop) for _ in range(n)]

    def close(self) -> None:
        self._loop.close()  # ends the DataLoader iterator, and with it the worker processes

    def _steps(self) -> Iterator[float]:
        cfg, model, device = self.tier.pretrain, self.model, self.device
        warmup = int(cfg.steps * cfg.warmup_fraction)
        cuda = device.type == "cuda"
        optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.peak_lr, betas=cfg.betas)
        scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        for step, samples in enumerate(self.loader):
            lr = lr_at(step, cfg.steps, cfg.peak_lr, warmup, cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            samples = samples.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
                loss, _, _, _ = model(samples, cfg.mask_ratio)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise RuntimeError(f"reference: loss is {loss_value} at step {step}")
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.norm(
                torch.stack([torch.norm(p.grad.detach(), 2.0) for p in params if p.grad is not None]), 2.0
            )
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            if cuda:
                torch.cuda.synchronize()
            yield loss_value


def train_reference(
    *, blobs: Sequence[bytes], tier: Tier, seed: int, device: torch.device, **options
) -> list[float]:
    """Pretrain with the reference loop for the tier's steps; returns every step's loss (options: ReferenceTrainer)."""
    trainer = ReferenceTrainer(blobs=blobs, tier=tier, seed=seed, device=device, **options)
    try:
        return trainer.run(trainer.total)
    finally:
        trainer.close()
