"""`hard`: keep the samples the full-pool MAE reconstructs worst, spread over k-means clusters.

Follows OptiDEL (Yang et al., "A Self-Supervised Paradigm for Data-Efficient Medical Foundation Model
Pre-training: V-information Optimization Framework"): harder samples lower H_V(Y|X) and more diverse ones
raise H_V(Y|∅). OptiDEL's SAM patch extraction and image synthesis are left out: a selection must name pool
images. Hardness is the per-sample MAE loss of the encoder pretrained on the whole pool (averaged over
fixed, seeded masks; see `evaluator.baselines.embed`); diversity comes from quotas proportional to cluster
size, so no cluster of the embedding space is abandoned because its images are easy.
"""

from __future__ import annotations

import numpy as np

from evaluator.baselines.quotas import proportional_quotas


def select_hard(losses: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Sorted pool indices: per cluster, its proportional quota of highest-loss members (ties: lower index)."""
    losses = np.asarray(losses, dtype=np.float64)
    if not np.all(np.isfinite(losses)):
        raise ValueError("the reconstruction losses hold NaN or infinite values")
    k = int(labels.max()) + 1
    quotas = proportional_quotas(np.bincount(labels, minlength=k), n)
    # Within a cluster, hardest first; lexsort's last key is primary and the sort is stable.
    order = np.lexsort((-losses, labels))
    starts = np.searchsorted(labels[order], np.arange(k))
    picked = [order[starts[c] : starts[c] + quotas[c]] for c in range(k) if quotas[c]]
    return np.sort(np.concatenate(picked))
