"""`prototype`: even out over-represented prototypes, favouring under-represented ones.

Follows CheXficient (prototype-driven data curation for a chest X-ray foundation model): the embedding
space is summarised by k-means prototypes and the curated subset draws evenly from them, so a dense mode
(here: long runs of near-identical video frames) cannot crowd out rare content. We water-fill: each
prototype gets the same quota L, or all its members if it has fewer, and the remainder goes one each to
the next-smallest prototypes. Inside a prototype the members are taken in a seeded random order, which
keeps its spread rather than only its densest core.
"""

from __future__ import annotations

import numpy as np

from evaluator.baselines.quotas import waterfill_quotas


def select_prototype(labels: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Sorted pool indices: water-filled quotas per cluster, members drawn in a seeded random order."""
    k = int(labels.max()) + 1
    quotas = waterfill_quotas(np.bincount(labels, minlength=k), n)
    rank = np.random.default_rng([seed, 3]).permutation(len(labels))
    order = np.lexsort((rank, labels))
    starts = np.searchsorted(labels[order], np.arange(k))
    picked = [order[starts[c] : starts[c] + quotas[c]] for c in range(k) if quotas[c]]
    return np.sort(np.concatenate(picked))
