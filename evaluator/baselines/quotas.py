"""How many samples to take: from a ratio, and per cluster (proportional or water-filled).

Every function is exact: the quotas always sum to the requested total, with ties settled by cluster index
so the same inputs give the same quotas.
"""

from __future__ import annotations

import math

import numpy as np


def target_count(ratio: float, pool_size: int) -> int:
    """n = round(ratio * N), at least 1 (half rounds up, unlike Python's banker's `round`)."""
    if not 0 < float(ratio) <= 1:  # also refuses NaN
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if pool_size < 1:
        raise ValueError("the pool is empty")
    return max(1, min(pool_size, math.floor(ratio * pool_size + 0.5)))


def proportional_quotas(sizes: np.ndarray, n: int) -> np.ndarray:
    """int64 quotas q_c <= sizes[c] with sum n, q_c ~ n * sizes[c] / N (largest remainder method)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot take {n} of {total}")
    exact = sizes * (n / total)
    quotas = np.floor(exact).astype(np.int64)
    left = n - int(quotas.sum())
    # Largest fractional part first; a stable sort breaks ties by cluster index.
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:left]] += 1
    return quotas


def waterfill_quotas(sizes: np.ndarray, n: int) -> np.ndarray:
    """int64 quotas with sum n: every cluster gets the same level L, or all it has if smaller.

    L is the largest integer with sum(min(s_c, L)) <= n; the few samples still owed go one each to the
    clusters that have more than L, smallest clusters first, so under-represented clusters are favoured.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot take {n} of {total}")
    lo, hi = 0, int(sizes.max(initial=0))
    while lo < hi:  # largest L with sum(min(s, L)) <= n
        mid = (lo + hi + 1) // 2
        if int(np.minimum(sizes, mid).sum()) <= n:
            lo = mid
        else:
            hi = mid - 1
    quotas = np.minimum(sizes, lo)
    left = n - int(quotas.sum())
    if left:
        open_ = np.flatnonzero(sizes > lo)
        open_ = open_[np.argsort(sizes[open_], kind="stable")]
        quotas[open_[:left]] += 1  # left < len(open_) by the choice of L
    return quotas
