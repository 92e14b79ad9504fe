"""Downstream segmentation: an MLP head on the encoder's patch tokens, the encoder finetuned end to end or
frozen (the tier's `freeze_encoder`).

Settings are fixed per tier; the model is evaluated once, after the last step, on the test split (no model
selection on test data). mIoU comes from the confusion matrix accumulated over the whole test split.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluator.augment import random_flips, to_model_input
from evaluator.feed import device_batches
from evaluator.mae import ViTEncoder
from evaluator.metrics import miou_from_confusion
from evaluator.pretrain import autocast_for, build_optimizer, param_groups, set_lr
from evaluator.progress import ProgressFn
from evaluator.schedule import SampleStream, derived_seed, lr_at
from evaluator.store import Task
from evaluator.tier import Tier

NUM_CLASSES = 2  # background, foreground (polyp or instrument)


class SegmentationModel(nn.Module):
    """Encoder -> per-token MLP -> class logits on the patch grid -> bilinear upsampling to the mask size."""

    def __init__(self, encoder: ViTEncoder, hidden: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.LayerNorm(encoder.embed_dim),
            nn.Linear(encoder.embed_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor, out_size: int) -> torch.Tensor:
        tokens = self.encoder.forward_features(x)[:, 1:, :]  # [N, L, D], CLS dropped
        logits = self.head(tokens)  # [N, L, 2]
        g = self.encoder.grid
        logits = logits.transpose(1, 2).reshape(x.shape[0], NUM_CLASSES, g, g)
        return F.interpolate(logits.float(), size=(out_size, out_size), mode="bilinear", align_corners=False)


def layer_id(name: str, depth: int) -> int:
    """Depth of a parameter for layer-wise lr decay (BEiT/MAE finetuning): embeddings 0, block i i+1, rest depth+1."""
    if name.startswith(("encoder.patch_embed", "encoder.cls_token", "encoder.pos_embed")):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def finetune(
    *,
    encoder: ViTEncoder,
    task: Task,
    tier: Tier,
    seed: int,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> dict:
    """Finetune `encoder` (modified in place) on `task.train`; return mIoU and the confusion matrix on `task.test`."""
    cfg = tier.finetune
    task_seed = derived_seed(seed, "finetune", task.name)
    torch.manual_seed(task_seed)
    model = SegmentationModel(encoder, cfg.head_hidden).to(device)
    if cfg.freeze_encoder:
        model.encoder.requires_grad_(False)  # out of the optimizer, and no backward through it
    depth = len(encoder.blocks)
    groups = param_groups(
        model, cfg.weight_decay, lambda name: cfg.layer_decay ** (depth + 1 - layer_id(name, depth))
    )
    optimizer = build_optimizer(groups, cfg.lr, (0.9, 0.999), device)
    warmup = int(cfg.steps * cfg.warmup_fraction)
    train = task.train
    stream = SampleStream(len(train.images), cfg.batch_size, task_seed)
    mask_size = train.masks.shape[-1]
    stage = f"finetune/{task.name}"
    rows = [np.sort(stream.batch(step)) for step in range(cfg.steps)]
    images = device_batches(train.images, rows, batch_size=cfg.batch_size, device=device)
    masks = device_batches(train.masks, rows, batch_size=cfg.batch_size, device=device)
    model.train()
    with contextlib.closing(images), contextlib.closing(masks):
        for step, image_batch, mask_batch in zip(range(cfg.steps), images, masks, strict=True):
            set_lr(optimizer, lr_at(step, cfg.steps, cfg.lr, warmup))
            generator = torch.Generator(device=device).manual_seed(derived_seed(task_seed, step))
            x = to_model_input(image_batch, device, tier.resolution)
            y = mask_batch.long()
            x, y = random_flips(x, y, generator)
            with autocast_for(tier, device):
                logits = model(x, mask_size)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress:
                progress(stage, step + 1, cfg.steps)
    confusion = confusion_on(model, task, tier, device)
    return {"miou": miou_from_confusion(confusion), "confusion": confusion.tolist()}


@torch.no_grad()
def confusion_on(model: SegmentationModel, task: Task, tier: Tier, device: torch.device) -> np.ndarray:
    """2x2 confusion matrix (rows: truth, cols: prediction) over the whole test split."""
    model.eval()
    test = task.test
    mask_size = test.masks.shape[-1]
    cm = torch.zeros(NUM_CLASSES * NUM_CLASSES, dtype=torch.long, device=device)
    size = tier.finetune.eval_batch_size
    rows = [np.arange(a, min(a + size, len(test.images))) for a in range(0, len(test.images), size)]
    images = device_batches(test.images, rows, batch_size=size, device=device)
    masks = device_batches(test.masks, rows, batch_size=size, device=device)
    with contextlib.closing(images), contextlib.closing(masks):
        for image_batch, mask_batch in zip(images, masks, strict=True):
            x = to_model_input(image_batch, device, tier.resolution)
            y = mask_batch.long()
            with autocast_for(tier, device):
                pred = model(x, mask_size).argmax(1)
            cm += torch.bincount((y * NUM_CLASSES + pred).flatten(), minlength=NUM_CLASSES * NUM_CLASSES)
    return cm.view(NUM_CLASSES, NUM_CLASSES).cpu().numpy()
