"""Batched image preparation on the training device: uint8 batches in, normalized model input out.

Augmentation runs on whole batches as tensor ops (an affine grid sample), so on a GPU the pool streams
from the uint8 memory-mapped store with no per-sample CPU work. The same code resizes a store kept at
another resolution to the tier's.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

# ImageNet statistics, as MAE and timm normalize.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def host_tensor(images: np.ndarray) -> torch.Tensor:
    """A CPU tensor over a uint8 array, copied only when torch cannot share it.

    Rows read from a memory-mapped store are read-only views; torch warns about (and must not write into)
    those, so they are copied once here. A gathered batch (fancy indexing) is already a fresh array.
    """
    if not (images.flags.writeable and images.flags.c_contiguous):
        images = np.array(images, order="C")
    return torch.from_numpy(images)


@functools.cache
def _stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per device: a new tensor from Python floats each step is a blocking host-to-device copy on CUDA.
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return mean, std


def to_model_input(
    images: np.ndarray | torch.Tensor, device: torch.device | str, size: int | None = None
) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalized float [N, 3, size, size] on `device` (bilinear resize if needed).

    A tensor already on `device` (from `evaluator.feed.device_batches`) is used as is; an array is copied.
    """
    x = images if isinstance(images, torch.Tensor) else host_tensor(images)
    x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size
        )
    mean, std = _stats(x.device)
    return (x - mean) / std


def random_resized_crop_flip(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    generator: torch.Generator | None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """MAE's RandomResizedCrop + horizontal flip, per sample, as one batched grid sample. x: [N, C, H, W].

    `u` [N, 5] (uniform in [0, 1)): the draws deciding area, aspect, position and flip; from `generator` if
    not given (a CUDA graph passes them in, drawn outside it).
    """
    n = x.shape[0]
    dev = x.device
    if u is None:
        u = torch.rand(n, 5, device=dev, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (u[:, 2] * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, crop kept inside the image
    cy = (u[:, 3] * 2 - 1) * (1 - h)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_flips(
    x: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random horizontal and vertical flips on images [N, C, H, W] and masks [N, H, W]."""
    u = torch.rand(x.shape[0], 2, device=x.device, generator=generator)
    h = u[:, 0] < 0.5
    v = u[:, 1] < 0.5
    x = torch.where(h.view(-1, 1, 1, 1), x.flip(-1), x)
    masks = torch.where(h.view(-1, 1, 1), masks.flip(-1), masks)
    x = torch.where(v.view(-1, 1, 1, 1), x.flip(-2), x)
    masks = torch.where(v.view(-1, 1, 1), masks.flip(-2), masks)
    return x, masks
