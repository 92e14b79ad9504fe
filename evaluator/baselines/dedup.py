"""Cluster-wise semantic deduplication: MedDEL (Algorithm 1 of the DataDEL paper) and the SemDeDup rule.

Both share one pairwise step. Inside each k-means cluster the members are put in *keep-preference order*
(nearest to the centroid first for MedDEL; SemDeDup's order is selectable) and every member gets

    m_i = max over earlier members j of cos(F_i, F_j)      (-inf for the first member of a cluster)

Algorithm 1 deletes, for every pair with cos > eta, the member farther from the centroid, and a deleted
member still counts as the nearer partner of later pairs (the pseudo-code never skips deleted items). So a
member survives exactly when m_i <= eta, which makes one pass over the pairs enough: running the paper's
outer `while t < max_iterations` loop again over the same clusters deletes nothing more. Because the kept
set is {i : m_i <= eta}, the retained fraction R(eta) is a step function of eta and the eta that gives a
requested ratio is read off the sorted m values (an exact search, not a bisection).

The pairwise step is batched in torch, one cluster at a time in row blocks, on the GPU when one is given:
O(N^2/k) similarities in all, never an N x N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluator.baselines.kmeans import Clustering

BLOCK_ELEMENTS = 1 << 25  # similarities held at once (128 MB in float32); bounds memory for huge clusters


@dataclass(frozen=True)
class PairwiseScores:
    """The outcome of the pairwise step, from which any eta's selection follows without recomputing."""

    max_sim: np.ndarray  # float32 [N]: m_i, -inf for a cluster's first member, +inf for excluded points
    excluded: np.ndarray  # bool [N]: dropped before the pairwise step (MedDEL's outliers)

    def kept(self, eta: float) -> np.ndarray:
        # Compared in float64: a float32 comparison could round a midpoint eta onto its upper neighbour.
        return ~self.excluded & (self.max_sim.astype(np.float64) <= eta)

    def eta_for_count(self, n: int) -> tuple[float, int]:
        """(eta, count kept): the eta whose kept count is closest to `n`, preferring the smaller on ties.

        eta is placed midway between consecutive distinct m values, so passing it back as `--eta`
        reproduces the same selection despite float rounding.
        """
        values = np.sort(self.max_sim[~self.excluded].astype(np.float64))
        if len(values) == 0:
            return float("nan"), 0
        # Distinct m values and how many points a threshold at each keeps (kept = #{m <= eta}).
        distinct, counts = np.unique(values, return_counts=True)
        cumulative = np.cumsum(counts)
        best = int(np.argmin(np.abs(cumulative - n)))
        lower = distinct[best]
        upper = distinct[best + 1] if best + 1 < len(distinct) else np.inf
        if np.isinf(lower):  # only the clusters' first members: any eta below every finite m works
            eta = (upper - 1.0) if np.isfinite(upper) else -1.0
        elif np.isinf(upper):
            eta = max(1.0, lower)
        else:
            eta = (lower + upper) / 2
        return float(eta), int(cumulative[best])


def keep_order(cos_to_centroid: np.ndarray, labels: np.ndarray, nearest_first: bool = True) -> np.ndarray:
    """Pool indices grouped by cluster, each cluster's members in keep-preference order.

    Ties (exact duplicates sit at the same distance) go to the lower pool index, so the result is
    deterministic.
    """
    key = -cos_to_centroid if nearest_first else cos_to_centroid
    # lexsort: the last key is primary. Indices break ties because the sort is stable.
    return np.lexsort((key.astype(np.float64), labels))


def pairwise_max_similarity(
    x: np.ndarray,
    order: np.ndarray,
    labels: np.ndarray,
    *,
    device: str | None = None,
    progress=None,
) -> np.ndarray:
    """float32 [len(order)] aligned with pool indices: m_i over the members of i's cluster listed before i.

    `order` lists the pool indices taking part, grouped by cluster and in keep-preference order inside a
    cluster; indices not listed get +inf.
    """
    import torch

    dev = torch.device(device or "cpu")
    out = np.full(len(x), np.inf, dtype=np.float32)
    if len(order) == 0:
        return out
    grouped = labels[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for a, b in zip(starts, ends, strict=True):
        members = order[a:b]
        e = torch.from_numpy(np.ascontiguousarray(x[members])).to(dev)
        m = torch.full((len(members),), -torch.inf, device=dev)
        s = len(members)
        rows = max(1, BLOCK_ELEMENTS // s)
        for r0 in range(1, s, rows):  # row 0 has no earlier member
            r1 = min(s, r0 + rows)
            sim = e[r0:r1] @ e[:r1].T  # [rows, r1]: only columns before each row matter
            col = torch.arange(r1, device=dev)
            row = torch.arange(r0, r1, device=dev)[:, None]
            sim = sim.masked_fill(col[None, :] >= row, -torch.inf)
            m[r0:r1] = sim.max(1).values
        out[members] = m.cpu().numpy()
        if progress:
            progress(len(members))
    return out


OUTLIER_DISTANCES = ("euclidean", "cosine")


def outlier_distance(shape: np.ndarray, labels: np.ndarray, k: int, metric: str = "euclidean") -> np.ndarray:
    """float32 [N]: each point's distance to its cluster's centre in the unit-norm descriptor `shape`.

    The centre of a cluster is the normalised mean of its members' `shape` vectors, so the clusters may come
    from another descriptor (k-means runs on the embeddings). `metric`: "euclidean", |F - C| in [0, 2] (the
    reading Algorithm 1's `dis` takes here: it keeps `dis` apart from the `cos` of its pairwise step), or
    "cosine", 1 - cos(F, C), also in [0, 2], which is the stricter-looking but far looser cut at the same eps
    (|F - C| = sqrt(2 (1 - cos)), so eps = 0.9 as a cosine distance is a Euclidean cut at 1.34).
    """
    if metric not in OUTLIER_DISTANCES:
        raise ValueError(f"outlier distance {metric!r}: choose from {', '.join(OUTLIER_DISTANCES)}")
    centres = np.zeros((k, shape.shape[1]), dtype=np.float64)
    np.add.at(centres, labels, shape.astype(np.float64))
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    centres = centres / np.maximum(norms, 1e-12)
    cos = np.clip(np.einsum("nd,nd->n", shape.astype(np.float64), centres[labels]), -1.0, 1.0)
    distance = np.sqrt(2.0 - 2.0 * cos) if metric == "euclidean" else 1.0 - cos
    return distance.astype(np.float32)


def dedup_scores(
    x: np.ndarray,
    clustering: Clustering,
    *,
    eps: float | None,
    nearest_first: bool = True,
    pairs: np.ndarray | None = None,
    shape: np.ndarray | None = None,
    metric: str = "euclidean",
    device: str | None = None,
    progress=None,
) -> tuple[PairwiseScores, np.ndarray | None]:
    """The pairwise scores, and each point's outlier distance (None without an outlier step).

    `x`: the unit-norm embeddings k-means clustered; they set the keep-preference order (nearness to the
    centroid). `pairs`: the unit-norm descriptor whose cosine the duplicate step compares (default `x`).
    `shape`: the one the outlier test measures (default `x`). `eps`: points farther than it from their
    cluster's centre (`outlier_distance`) are outliers, dropped first and left out of the pairs (MedDEL
    lines 5-6; None = no outlier step, as in SemDeDup). Leaving them out changes nothing else, since
    Algorithm 1 deletes them whatever their pairs.
    """
    cos = clustering.cosine_to_centroid(x)
    distance = None
    excluded = np.zeros(len(x), dtype=bool)
    if eps is not None:
        distance = outlier_distance(x if shape is None else shape, clustering.labels, clustering.k, metric)
        excluded = distance > eps
    order = keep_order(cos, clustering.labels, nearest_first=nearest_first)
    order = order[~excluded[order]]
    max_sim = pairwise_max_similarity(
        x if pairs is None else pairs, order, clustering.labels, device=device, progress=progress
    )
    return PairwiseScores(max_sim=max_sim, excluded=excluded), distance
