"""Spherical k-means on L2-normalised embeddings, with two interchangeable backends.

SemDeDup (and so MedDEL) clusters normalised embeddings with faiss's spherical k-means: centroids are
renormalised after every update and points are assigned by the largest inner product (= cosine). Both
backends here do exactly that, with the same training-set rule as faiss: at most `max_points_per_centroid`
points per centroid are used to fit (a seeded subsample), then every point is assigned to its nearest fitted
centroid. `bench/selection.py` measures the two; `DEFAULT_BACKEND` is the faster one on this machine's CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Measured by `bench/selection.py` on 2 CPU cores (docs/baselines.md): faiss wins on CPU.
DEFAULT_BACKEND = "faiss"
BACKENDS = ("faiss", "torch")
DEFAULT_NITER = 20
MAX_POINTS_PER_CENTROID = 256  # faiss's default training subsample: enough to place centroids, far cheaper


@dataclass(frozen=True)
class Clustering:
    centroids: np.ndarray  # float32 [k, D], unit norm
    labels: np.ndarray  # int64 [N]: the centroid each point is assigned to
    backend: str

    @property
    def k(self) -> int:
        return len(self.centroids)

    def cosine_to_centroid(self, x: np.ndarray) -> np.ndarray:
        """float32 [N]: cos(x_i, centroid of i's cluster), for unit-norm `x`."""
        return np.einsum("nd,nd->n", x, self.centroids[self.labels], dtype=np.float32)


def default_k(n: int) -> int:
    """sqrt(N) clusters: the pairwise step then costs O(N^1.5) and k-means O(N^1.5) too (88,282 -> 297)."""
    return max(1, min(n, round(n**0.5)))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise ValueError(f"{int(np.sum(norms == 0))} embedding(s) are all zeros: they have no direction")
    return np.ascontiguousarray(x / norms)


def resolve_backend(backend: str, device: str | None = None) -> str:
    if backend == "auto":
        if device is not None and device.startswith("cuda"):
            return "torch"  # faiss here is the CPU build; torch runs the same algorithm on the GPU
        backend = DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    if backend == "faiss":
        try:
            import faiss  # noqa: F401
        except ImportError:
            return "torch"
    return backend


def spherical_kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    niter: int = DEFAULT_NITER,
    backend: str = "auto",
    device: str | None = None,
) -> Clustering:
    """Cluster unit-norm rows of `x` (float32 [N, D]) into `k` clusters; deterministic given `seed`."""
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} clusters is impossible for {n} points (need 1 <= k <= N)")
    backend = resolve_backend(backend, device)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend == "faiss":
        centroids = _fit_faiss(x, k, seed=seed, niter=niter)
    else:
        centroids = _fit_torch(x, k, seed=seed, niter=niter, device=device)
    labels = assign(x, centroids, device=device if backend == "torch" else None)
    return Clustering(centroids=centroids, labels=labels, backend=backend)


def assign(
    x: np.ndarray, centroids: np.ndarray, *, device: str | None = None, chunk: int = 16384
) -> np.ndarray:
    """int64 [N]: index of the centroid with the largest inner product, computed in row chunks."""
    import torch

    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).to(device or "cpu")
    out = np.empty(len(x), dtype=np.int64)
    for a in range(0, len(x), chunk):
        xb = torch.from_numpy(x[a : a + chunk]).to(c.device)
        out[a : a + chunk] = (xb @ c.T).argmax(1).cpu().numpy()
    return out


def _training_sample(n: int, k: int, seed: int) -> np.ndarray | None:
    cap = k * MAX_POINTS_PER_CENTROID
    if n <= cap:
        return None
    return np.sort(np.random.default_rng([seed, 1]).choice(n, cap, replace=False))


def _fit_faiss(x: np.ndarray, k: int, *, seed: int, niter: int) -> np.ndarray:
    import faiss

    sample = _training_sample(len(x), k, seed)
    train = x if sample is None else x[sample]
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
        max_points_per_centroid=MAX_POINTS_PER_CENTROID, min_points_per_centroid=1,
    )  # fmt: skip
    km.train(train)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _fit_torch(x: np.ndarray, k: int, *, seed: int, niter: int, device: str | None) -> np.ndarray:
    """Lloyd iterations with cosine assignment; an emptied centroid restarts on the worst-fitted point."""
    import torch

    sample = _training_sample(len(x), k, seed)
    train = torch.from_numpy(x if sample is None else x[sample]).to(device or "cpu")
    n = len(train)
    init = np.random.default_rng([seed, 2]).choice(n, k, replace=False)
    c = train[torch.from_numpy(init).to(train.device)].clone()
    for _ in range(niter):
        labels, best = _assign_torch(train, c)
        sums = torch.zeros_like(c).index_add_(0, labels, train)
        counts = torch.bincount(labels, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            # Restart each empty centroid on a distinct point that its own centroid fits worst.
            worst = torch.argsort(best, stable=True)[: len(empty)]
            sums[empty] = train[worst]
        c = torch.nn.functional.normalize(sums, dim=1)
    return c.cpu().numpy().astype(np.float32)


def _assign_torch(x, c, chunk: int = 16384):
    import torch

    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    best = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for a in range(0, len(x), chunk):
        scores = x[a : a + chunk] @ c.T
        best[a : a + chunk], labels[a : a + chunk] = scores.max(1)
    return labels, best
