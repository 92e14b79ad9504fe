"""The fixed-compute schedule: which samples each step sees, and the learning rate at each step.

Pure functions of (selection size, step, seed): a run resumed from a checkpoint at step k sees exactly
the batches an uninterrupted run would, with no data-loader state to save.
"""

from __future__ import annotations

import math

import numpy as np


def epochs_seen(n_selected: int, samples_seen: int) -> float:
    """A selection of n samples under a budget of S samples seen is passed over S / n times."""
    return samples_seen / n_selected


class SampleStream:
    """Epoch after epoch of seeded permutations of range(n), cut into batches; batches span epoch ends."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n <= 0:
            raise ValueError("cannot draw batches from an empty selection")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def batch(self, step: int) -> np.ndarray:
        """Positions (into the selection) of the samples of optimizer step `step`."""
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(pos, self.n)
        out = np.empty_like(pos)
        for epoch in np.unique(epochs):
            where = epochs == epoch
            out[where] = self._perm(int(epoch))[offsets[where]]
        return out


def lr_at(step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up to `peak_lr`, then a half-cosine decay to `min_lr` at `total_steps`."""
    if warmup_steps and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (seed, purpose, step...): independent streams per purpose and step."""
    import hashlib

    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
