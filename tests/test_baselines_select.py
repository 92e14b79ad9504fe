"""Selection baselines on synthetic embeddings with planted duplicates, near duplicates and outliers."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.baselines import METHODS, Features, Options, RatioUnreachable, SelectError, select
from evaluator.baselines.kmeans import l2_normalize, spherical_kmeans
from evaluator.baselines.quotas import proportional_quotas, waterfill_quotas


def planted_pool(seed=0, d=128, n_centers=12, n_distinct=600, n_exact=40, n_near=40, n_outliers=8):
    """Embeddings with a known answer, rows shuffled.

    Distinct points lie around `n_centers` directions (pairwise cosine ~0.6 at most); `n_exact` of them get
    an exact copy and `n_near` a near copy (cosine ~0.999); outliers are random directions (cosine ~0.1 to
    every centre). `group[i]` is shared by an original and its copy; each outlier is its own group.
    """
    rng = np.random.default_rng(seed)
    centers = l2_normalize(rng.standard_normal((n_centers, d)))

    def around(c, spread):
        return c + spread * l2_normalize(rng.standard_normal(c.shape))

    distinct = around(centers[rng.integers(n_centers, size=n_distinct)], 0.8)
    src = rng.choice(n_distinct, n_exact + n_near, replace=False)
    exact = distinct[src[:n_exact]]
    near = around(l2_normalize(distinct[src[n_exact:]]), 0.05)
    outliers = rng.standard_normal((n_outliers, d))
    x = np.concatenate([distinct, exact, near, outliers]).astype(np.float32)
    kind = np.array(["distinct"] * n_distinct + ["copy"] * (n_exact + n_near) + ["outlier"] * n_outliers)
    group = np.r_[np.arange(n_distinct), src, n_distinct + np.arange(n_outliers)]
    perm = rng.permutation(len(x))
    return x[perm], kind[perm], group[perm]


def planted_scores(kept: np.ndarray, kind: np.ndarray, group: np.ndarray, *, outliers_planted: bool):
    """(precision, recall) of the dropped set against the planted one.

    Planted: all but one member of every duplicate group (any one may survive) and, when
    `outliers_planted`, every outlier.
    """
    dropped = np.ones(len(kind), dtype=bool)
    dropped[kept] = False
    sizes = np.bincount(group)
    dropped_per_group = np.bincount(group, weights=dropped).astype(int)
    is_outlier = np.zeros(len(sizes), dtype=bool)
    is_outlier[group[kind == "outlier"]] = True
    expected = np.where(is_outlier, 1 if outliers_planted else 0, sizes - 1)
    true_positive = int(np.minimum(dropped_per_group, expected).sum())
    return true_positive / max(int(dropped.sum()), 1), true_positive / int(expected.sum())


@pytest.fixture(scope="module")
def pool():
    x, kind, group = planted_pool()
    return Features(size=len(x), embeddings=x), kind, group


def test_meddel_drops_planted_duplicates_and_outliers(pool):
    features, kind, group = pool
    selected = select("meddel", features, Options(eta=0.9, k=12))  # the paper's eps, Euclidean
    precision, recall = planted_scores(selected.indices, kind, group, outliers_planted=True)
    print(f"meddel planted set: precision {precision:.3f} recall {recall:.3f} ({selected.info})")
    assert precision >= 0.95 and recall >= 0.95
    assert selected.info["outliers"] == int((kind == "outlier").sum())


def test_meddel_outlier_share_reads_eps_off_the_pool(pool):
    """--outlier-share F drops the F farthest from their centroid: here exactly the planted outliers."""
    features, kind, group = pool
    share = (kind == "outlier").mean()
    selected = select("meddel", features, Options(eta=0.9, outlier_share=float(share), k=12))
    assert selected.info["outliers"] == int((kind == "outlier").sum())
    assert 0 < selected.info["eps"] < 0.9
    assert planted_scores(selected.indices, kind, group, outliers_planted=True) == (1.0, 1.0)
    with pytest.raises(SelectError, match="outlier-share must be in"):
        select("meddel", features, Options(eta=0.9, outlier_share=1.0))


def test_semdedup_drops_planted_duplicates(pool):
    features, kind, group = pool
    selected = select("semdedup", features, Options(eta=0.9, k=12))
    precision, recall = planted_scores(selected.indices, kind, group, outliers_planted=False)
    print(f"semdedup planted duplicates: precision {precision:.3f} recall {recall:.3f} ({selected.info})")
    assert precision >= 0.95 and recall >= 0.95
    assert set(np.flatnonzero(kind == "outlier")) <= set(selected.indices)  # no outlier step


@pytest.mark.parametrize("method", ["meddel", "semdedup"])
def test_planted_go_before_any_distinct_point(pool, method):
    """Shrinking the ratio drops the planted points first: precision 1 until they are gone, then recall 1."""
    features, kind, group = pool
    n_planted = int((kind == "copy").sum()) + (int((kind == "outlier").sum()) if method == "meddel" else 0)
    n = features.size
    for n_drop in (n_planted // 2, n_planted, n_planted + 30):
        selected = select(method, features, Options(ratio=(n - n_drop) / n, k=12))
        precision, recall = planted_scores(selected.indices, kind, group, outliers_planted=method == "meddel")
        print(
            f"{method} dropping {n - selected.n} (planted {n_planted}): precision {precision:.3f} recall {recall:.3f}"
        )
        if n_drop <= n_planted:
            assert precision == 1.0
        if n_drop >= n_planted:
            assert recall == 1.0


def test_algorithm_1_is_a_fixed_point(pool):
    """A second pass of the pairwise rule over the survivors deletes nothing (the paper's outer loop)."""
    features, _, _ = pool
    first = select("semdedup", features, Options(eta=0.8, k=12))
    x = l2_normalize(features.embeddings)
    clustering = spherical_kmeans(x, 12, seed=0)
    labels = clustering.labels[first.indices]
    sims = x[first.indices] @ x[first.indices].T
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    assert not (sims[same] > 0.8).any()


@pytest.mark.parametrize("method", ["meddel", "semdedup"])
@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5, 0.9])
def test_dedup_ratio_within_one_point(pool, method, ratio):
    features, _, _ = pool
    selected = select(method, features, Options(ratio=ratio, k=12))
    assert abs(selected.ratio - ratio) <= 0.01, selected.info
    # The reported eta reproduces the selection when passed back directly.
    again = select(method, features, Options(eta=selected.info["eta"], k=12))
    np.testing.assert_array_equal(again.indices, selected.indices)


@pytest.mark.parametrize("method", ["random", "hard", "prototype"])
@pytest.mark.parametrize("ratio", [0.001, 0.05, 0.2, 0.5, 1.0])
def test_exact_ratio(pool, method, ratio):
    features, _, _ = pool
    losses = np.random.default_rng(1).random(features.size)
    features = Features(features.size, features.embeddings, losses)
    selected = select(method, features, Options(ratio=ratio, k=12))
    assert selected.n == max(1, int(np.floor(ratio * features.size + 0.5)))
    assert len(np.unique(selected.indices)) == selected.n
    assert np.all(np.diff(selected.indices) > 0)


@pytest.mark.parametrize("method", list(METHODS))
def test_deterministic_and_seeded(pool, method):
    features, _, _ = pool
    losses = np.random.default_rng(1).random(features.size)
    features = Features(features.size, features.embeddings, losses)
    runs = [select(method, features, Options(ratio=0.3, seed=seed, k=12)).indices for seed in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0], runs[1])
    if method == "random":
        assert not np.array_equal(runs[0], runs[2])


def test_hard_keeps_the_highest_losses_within_cluster_quotas(pool):
    features, _, _ = pool
    losses = np.random.default_rng(2).random(features.size)
    selected = select("hard", Features(features.size, features.embeddings, losses), Options(ratio=0.25, k=12))
    labels = spherical_kmeans(l2_normalize(features.embeddings), 12, seed=0).labels
    sizes = np.bincount(labels, minlength=12)
    taken = np.bincount(labels[selected.indices], minlength=12)
    assert np.all(np.abs(taken - sizes * selected.n / features.size) < 1)  # proportional quotas
    chosen = np.zeros(features.size, dtype=bool)
    chosen[selected.indices] = True
    for c in range(12):
        member = labels == c
        if taken[c] and (member & ~chosen).any():
            assert losses[member & chosen].min() >= losses[member & ~chosen].max()


def test_prototype_evens_out_clusters(pool):
    """Per prototype: a small one is taken whole, the large ones all get the same level (±1)."""
    features, _, _ = pool
    selected = select("prototype", features, Options(ratio=0.3, k=12))
    labels = spherical_kmeans(l2_normalize(features.embeddings), 12, seed=0).labels
    sizes = np.bincount(labels, minlength=12)
    taken = np.bincount(labels[selected.indices], minlength=12)
    full = taken == sizes
    level = taken[~full].min()
    assert np.all(taken[~full] - level <= 1) and np.all(sizes[full] <= level + 1)
    assert taken.sum() == selected.n


def test_waterfill_quotas_favour_small_clusters():
    quotas = waterfill_quotas(np.array([300, 5, 40, 300, 12]), 100)
    # Level 27 (5 + 12 + 3 * 27 = 98); the 2 left go to the smallest clusters above it: 40, then the first 300.
    assert list(quotas) == [28, 5, 28, 27, 12]
    # 100 * size / 657 = 45.66, 0.76, 6.09, 45.66, 1.83: floors sum to 97, the 3 left go to the largest
    # fractions (0.83, 0.76, then the first of the tied 0.66).
    assert list(proportional_quotas(np.array([300, 5, 40, 300, 12]), 100)) == [46, 1, 6, 45, 2]


def test_kmeans_backends_agree_on_separated_clusters():
    rng = np.random.default_rng(0)
    centers = l2_normalize(rng.standard_normal((5, 48)))
    truth = rng.integers(5, size=500)
    x = l2_normalize(centers[truth] + 0.1 * rng.standard_normal((500, 48)))
    for backend in ("faiss", "torch"):
        labels = spherical_kmeans(x, 5, seed=0, backend=backend).labels
        # Same partition up to renaming: every true cluster maps to one label and vice versa.
        pairs = set(zip(truth.tolist(), labels.tolist(), strict=True))
        assert len(pairs) == 5, backend


def test_errors_are_clear(pool):
    features, _, _ = pool
    with pytest.raises(SelectError, match="unknown method 'best'"):
        select("best", features, Options(ratio=0.5))
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(SelectError, match=r"ratio must be in \(0, 1\]"):
            select("random", features, Options(ratio=bad))
    with pytest.raises(SelectError, match="needs the pool's embeddings"):
        select("meddel", Features(features.size), Options(ratio=0.5))
    with pytest.raises(SelectError, match="needs the pool's losses"):
        select("hard", Features(features.size, features.embeddings), Options(ratio=0.5))
    with pytest.raises(SelectError, match="exactly one of --ratio"):
        select("meddel", features, Options(ratio=0.5, eta=0.9))


def test_unreachable_ratio_says_why(pool):
    features, _, _ = pool
    # eps = 0.1 leaves almost every point an outlier, so 90 % cannot be kept.
    with pytest.raises(RatioUnreachable, match="raise --eps") as info:
        select("meddel", features, Options(ratio=0.9, eps=0.1, k=12))
    assert info.value.nearest.n < 0.89 * features.size
    # One survivor per cluster is the floor: 100 clusters cannot give 5 samples.
    with pytest.raises(RatioUnreachable, match="lower --k"):
        select("semdedup", features, Options(ratio=5 / features.size, k=100))


def test_a_shared_cache_never_crosses_pools(pool):
    features, _, _ = pool
    other, _, _ = planted_pool(seed=5)
    other = Features(len(other), other)
    cache: dict = {}
    select("prototype", features, Options(ratio=0.3, k=12), cache=cache)
    shared = select("prototype", other, Options(ratio=0.3, k=12), cache=cache)
    fresh = select("prototype", other, Options(ratio=0.3, k=12))
    np.testing.assert_array_equal(shared.indices, fresh.indices)
