"""The selection baselines by name: what each reads, which options it takes, and the paper it follows.

`select(name, features, options)` is the one entry point; `METHODS[name].summary` is what `delbench select
--help` and docs/baselines.md say about a method. Every method is deterministic given its inputs and seed,
and returns pool indices in ascending order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evaluator.baselines import descriptors
from evaluator.baselines.dedup import OUTLIER_DISTANCES, PairwiseScores, dedup_scores, outlier_distance
from evaluator.baselines.hard import select_hard
from evaluator.baselines.kmeans import DEFAULT_NITER, Clustering, default_k, l2_normalize, spherical_kmeans
from evaluator.baselines.prototype import select_prototype
from evaluator.baselines.quotas import target_count

MEDDEL_EPS = 0.9  # the paper's epsilon (DataDEL, Section 4.1): a Euclidean distance between unit vectors
RATIO_TOLERANCE = 0.01  # --ratio for meddel/semdedup must land within one percentage point


class SelectError(ValueError):
    """A selection request that cannot be met; the message says why and what to change."""


class RatioUnreachable(SelectError):
    """No threshold reaches the asked ratio; `nearest` is the closest selection there is."""

    def __init__(self, message: str, nearest: Selected):
        super().__init__(message)
        self.nearest = nearest


@dataclass(frozen=True)
class Features:
    """What the methods read about a pool of `size` samples (rows in pool order)."""

    size: int
    embeddings: np.ndarray | None = None  # float [N, D], any norm
    losses: np.ndarray | None = None  # float [N]: per-sample MAE reconstruction loss
    # float [N, 32, 32, 3] grey levels (`descriptors.thumbnails`): what the outlier and duplicate tests read;
    # without them both read the embeddings
    thumbnails: np.ndarray | None = None


@dataclass(frozen=True)
class Options:
    ratio: float | None = None  # retained fraction in (0, 1]
    seed: int = 0
    k: int | None = None  # clusters; None = sqrt(N)
    eps: float | None = MEDDEL_EPS  # meddel: outlier cut on the distance to the cluster's centre
    outlier_distance: str = "euclidean"  # meddel: how that distance is read (dedup.outlier_distance)
    outlier_share: float | None = None  # meddel: set eps to drop this share farthest from their centroid
    eta: float | None = None  # meddel/semdedup: duplicate threshold on cosine similarity
    keep: str = "nearest"  # semdedup: which member of a duplicate group survives
    kmeans_backend: str = "auto"
    niter: int = DEFAULT_NITER
    device: str | None = None


@dataclass(frozen=True)
class Selected:
    indices: np.ndarray  # int64, ascending pool positions
    pool_size: int
    info: dict = field(default_factory=dict)  # method parameters and diagnostics, JSON-ready

    @property
    def n(self) -> int:
        return len(self.indices)

    @property
    def ratio(self) -> float:
        return self.n / self.pool_size


@dataclass(frozen=True)
class Method:
    name: str
    summary: str  # what it does and which paper it follows: shown by --help
    needs: tuple[str, ...]  # "embeddings", "losses"
    options: tuple[str, ...]  # Options fields it reads besides ratio and seed
    exact_ratio: bool  # True: n = round(ratio * N) exactly; False: within RATIO_TOLERANCE
    run: Callable[[Features, Options, dict], Selected]


class _Memo:
    """Shares the normalised embeddings, clusterings and pairwise scores between calls on one pool.

    A cache dict handed in with other embeddings than last time is emptied first, so it can never serve
    one pool's clustering to another.
    """

    def __init__(self, cache: dict | None, features: Features):
        self.cache = {} if cache is None else cache
        if self.cache.get("embeddings") is not features.embeddings:
            self.cache.clear()
            self.cache["embeddings"] = features.embeddings

    def get(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def _unit(features: Features, memo: _Memo) -> np.ndarray:
    return memo.get(("unit",), lambda: l2_normalize(features.embeddings))


def _shape(features: Features, memo: _Memo) -> np.ndarray:
    """What the outlier test reads: the thumbnails' structure, else the embeddings."""
    if features.thumbnails is None:
        return _unit(features, memo)
    return memo.get(("structure",), lambda: descriptors.structure(features.thumbnails))


def _pairs(features: Features, memo: _Memo) -> np.ndarray:
    """What the duplicate step compares: the thumbnails' appearance, else the embeddings."""
    if features.thumbnails is None:
        return _unit(features, memo)
    return memo.get(("appearance",), lambda: descriptors.appearance(features.thumbnails))


def _kmeans_key(features: Features, options: Options) -> tuple:
    k = default_k(features.size) if options.k is None else options.k
    return ("kmeans", k, options.seed, options.kmeans_backend, options.niter, options.device)


def _clustering(features: Features, options: Options, memo: _Memo) -> Clustering:
    x = _unit(features, memo)
    key = _kmeans_key(features, options)
    k = key[1]
    return memo.get(
        key,
        lambda: spherical_kmeans(
            x,
            k,
            seed=options.seed,
            niter=options.niter,
            backend=options.kmeans_backend,
            device=options.device,
        ),
    )


def _cluster_info(clustering: Clustering) -> dict:
    return {"k": clustering.k, "kmeans_backend": clustering.backend}


# ----------------------------------------------------------------------------------------- methods


def _run_random(features: Features, options: Options, memo: _Memo) -> Selected:
    n = target_count(options.ratio, features.size)
    picked = np.random.default_rng([options.seed, 4]).choice(features.size, n, replace=False)
    return Selected(np.sort(picked).astype(np.int64), features.size, {})


def _dedup(
    features: Features, options: Options, memo: _Memo, *, eps: float | None, nearest_first: bool
) -> Selected:
    if (options.ratio is None) == (options.eta is None):
        raise SelectError(
            "give exactly one of --ratio (eta found by search) or --eta (threshold set directly)"
        )
    x = _unit(features, memo)
    clustering = _clustering(features, options, memo)
    metric = options.outlier_distance
    key = ("pairs", _kmeans_key(features, options), eps, metric, nearest_first)
    scores, _ = memo.get(
        key,
        lambda: dedup_scores(
            x,
            clustering,
            eps=eps,
            nearest_first=nearest_first,
            pairs=_pairs(features, memo),
            shape=_shape(features, memo),
            metric=metric,
            device=options.device,
        ),
    )
    info = {**_cluster_info(clustering), "eps": eps, "outliers": int(scores.excluded.sum())}
    if eps is not None:
        info["outlier_distance"] = metric
    info["descriptors"] = "thumbnails" if features.thumbnails is not None else "embeddings"
    if options.eta is not None:
        eta = float(options.eta)
        kept = scores.kept(eta)
        if not kept.any():
            raise SelectError(f"eta = {eta} and eps = {eps} keep no sample: raise them")
        return Selected(np.flatnonzero(kept).astype(np.int64), features.size, {**info, "eta": eta})
    return _dedup_to_ratio(scores, options.ratio, features.size, info)


def _dedup_to_ratio(scores: PairwiseScores, ratio: float, size: int, info: dict) -> Selected:
    n = target_count(ratio, size)
    eta, _ = scores.eta_for_count(n)
    selected = Selected(np.flatnonzero(scores.kept(eta)).astype(np.int64), size, {**info, "eta": eta})
    if abs(selected.ratio - ratio) > RATIO_TOLERANCE:
        inliers = size - info["outliers"]
        if selected.n < n and inliers < n:
            why = (
                f"only {inliers:,} samples ({inliers / size:.1%}) are within eps = {info['eps']} of their "
                f"centroid, so no eta can keep more: raise --eps"
            )
        elif selected.n > n:
            floor = int(np.isneginf(scores.max_sim).sum())
            why = (
                f"even the lowest eta keeps one member of every cluster ({floor:,} samples with "
                f"k = {info['k']}): lower --k"
            )
        else:
            why = "exact duplicates tie at the same similarity, so eta cannot split them"
        raise RatioUnreachable(
            f"no eta reaches R = {ratio:.2%}: the nearest is R = {selected.ratio:.2%} (eta = {eta:.6g}); {why}",
            selected,
        )
    return selected


def _run_meddel(features: Features, options: Options, memo: _Memo) -> Selected:
    share = options.outlier_share
    if options.outlier_distance not in OUTLIER_DISTANCES:
        raise SelectError(
            f"--outlier-distance must be one of {', '.join(OUTLIER_DISTANCES)}, got {options.outlier_distance!r}"
        )
    if share is None:
        if options.eps is None or options.eps < 0:
            raise SelectError(f"meddel needs eps >= 0 (a distance in [0, 2]); got {options.eps!r}")
        return _dedup(features, options, memo, eps=float(options.eps), nearest_first=True)
    if not 0 <= share < 1:
        raise SelectError(f"--outlier-share must be in [0, 1), got {share!r}")
    # The same outlier rule with eps read off this pool's distances: the share farthest from their centre.
    clustering = _clustering(features, options, memo)
    distance = outlier_distance(
        _shape(features, memo), clustering.labels, clustering.k, options.outlier_distance
    )
    eps = float(np.quantile(distance.astype(np.float64), 1.0 - share))
    selected = _dedup(features, options, memo, eps=eps, nearest_first=True)
    return Selected(selected.indices, selected.pool_size, {**selected.info, "outlier_share": share})


def _run_semdedup(features: Features, options: Options, memo: _Memo) -> Selected:
    if options.keep not in ("nearest", "farthest"):
        raise SelectError(f"--keep must be nearest or farthest, got {options.keep!r}")
    selected = _dedup(features, options, memo, eps=None, nearest_first=options.keep == "nearest")
    return Selected(selected.indices, selected.pool_size, {**selected.info, "keep": options.keep})


def _run_hard(features: Features, options: Options, memo: _Memo) -> Selected:
    n = target_count(options.ratio, features.size)
    clustering = _clustering(features, options, memo)
    picked = select_hard(features.losses, clustering.labels, n)
    return Selected(picked.astype(np.int64), features.size, _cluster_info(clustering))


def _run_prototype(features: Features, options: Options, memo: _Memo) -> Selected:
    n = target_count(options.ratio, features.size)
    clustering = _clustering(features, options, memo)
    picked = select_prototype(clustering.labels, n, seed=options.seed)
    return Selected(picked.astype(np.int64), features.size, _cluster_info(clustering))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "random",
            "uniform random subset of exactly round(ratio*N) samples (seeded); the classic reference",
            needs=(),
            options=(),
            exact_ratio=True,
            run=_run_random,
        ),
        Method(
            "meddel",
            "MedDEL, Algorithm 1 of the DataDEL benchmark paper (built on SemDeDup): spherical k-means on "
            "the embeddings, drop frames farther than eps (Euclidean, unit vectors) from their cluster's "
            "centre in the thumbnails' structure (outliers: black, noise), then in each cluster drop the "
            "member farther from the centroid of every pair whose thumbnails' cosine is > eta (copies)",
            needs=("embeddings",),
            options=("k", "eps", "outlier_share", "outlier_distance", "eta"),
            exact_ratio=False,
            run=_run_meddel,
        ),
        Method(
            "semdedup",
            "SemDeDup (Abbas et al. 2023), the rule MedDEL builds on: spherical k-means on the embeddings, "
            "then in each cluster drop every member whose thumbnails' cosine to a member preferred to it is "
            "> eta (--keep nearest: nearer the centroid, as MedDEL; farthest: SemDeDup's own default); no "
            "outlier step",
            needs=("embeddings",),
            options=("k", "eta", "keep"),
            exact_ratio=False,
            run=_run_semdedup,
        ),
        Method(
            "hard",
            "OptiDEL's hard-sample idea (Yang et al., V-information) without its image synthesis: keep the "
            "samples with the highest MAE reconstruction loss under the full-pool encoder, with per-cluster "
            "quotas proportional to cluster size for diversity",
            needs=("embeddings", "losses"),
            options=("k",),
            exact_ratio=True,
            run=_run_hard,
        ),
        Method(
            "prototype",
            "CheXficient's prototype-driven curation: k-means prototypes, equal water-filled quota per "
            "prototype (all of a small one, the rest spread over larger ones, smallest first), seeded draw "
            "inside each",
            needs=("embeddings",),
            options=("k",),
            exact_ratio=True,
            run=_run_prototype,
        ),
    )
}


def select(name: str, features: Features, options: Options, *, cache: dict | None = None) -> Selected:
    """Run method `name`. `cache` (a dict kept by the caller) reuses clusterings across ratios."""
    if name not in METHODS:
        raise SelectError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    method = METHODS[name]
    if options.ratio is not None:
        try:
            target_count(options.ratio, max(features.size, 1))  # validates the range before any work
        except ValueError as exc:
            raise SelectError(str(exc)) from None
    elif "eta" not in method.options:
        raise SelectError(f"{name} needs --ratio")
    for need in method.needs:
        array = getattr(features, need)
        if array is None:
            raise SelectError(f"{name} needs the pool's {need}; compute them with `delbench embed`")
        if len(array) != features.size:
            raise SelectError(f"{need} have {len(array):,} rows but the pool has {features.size:,} samples")
    selected = method.run(features, options, _Memo(cache, features))
    info = {"method": name, "seed": options.seed, **selected.info, "n": selected.n, "R": selected.ratio}
    return Selected(selected.indices, selected.pool_size, info)
