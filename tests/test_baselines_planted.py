"""MedDEL and SemDeDup on a pool with planted copies and planted outliers: they must find what was planted.

The pool is the uniform synthetic pool (version 1) with, added: exact copies and near copies (every pixel one
grey level off) of some of its frames, and invalid frames (uniform noise, black screens). The embeddings are
the real thing at the micro tier: `embed_pool` pretrains the MAE on this pool and embeds it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from evaluator.baselines.embed import embed_pool
from evaluator.baselines.methods import Options, select
from evaluator.store import PoolWriter, open_pool
from evaluator.synth import PoolTruth, generate, near_copy
from evaluator.tier import load_tier

BASE, EXACT, NEAR, NOISE, BLACK = 600, 30, 30, 15, 15


@pytest.fixture(scope="module")
def planted(tmp_path_factory, micro_tier_path):
    root = tmp_path_factory.mktemp("planted")
    generate(root / "base", seed=3, size=BASE, resolution=32, version=1)
    base = open_pool(root / "base")
    frames = list(base.images(32))
    ids = list(base.ids)
    original = list(range(BASE))
    invalid = [False] * BASE
    rng = np.random.default_rng(11)
    sources = rng.choice(BASE, EXACT + NEAR, replace=False)
    for k, o in enumerate(sources):
        frames.append(frames[o].copy() if k < EXACT else near_copy(frames[o], rng))
        ids.append(f"planted/copy{k:03d}")
        original.append(int(o))
        invalid.append(False)
    for k in range(NOISE + BLACK):
        high = 256 if k < NOISE else 4
        frames.append(rng.integers(0, high, (32, 32, 3)).astype(np.uint8))
        ids.append(f"planted/{'noise' if k < NOISE else 'black'}{k:03d}")
        original.append(len(original))
        invalid.append(True)
    order = rng.permutation(len(frames))  # planted frames anywhere in the pool, not at its end
    where = np.argsort(order)
    with PoolWriter(root / "pool", len(frames), [32]) as writer:
        for row, i in enumerate(order):
            record = {
                "id": ids[i],
                "source": ids[i].split("/")[0],
                "video": ids[i].rsplit("/", 1)[0],
                "frame": row,
                "sha256": hashlib.sha256(frames[i].tobytes()).hexdigest(),
            }
            writer.put(row, record, {32: frames[i]})
        pool = writer.commit()
    truth = PoolTruth(
        disruptive=np.array(invalid)[order],
        invalid=np.array(invalid)[order],
        original=where[np.array(original)[order]],
        shows=np.zeros(len(frames), bool),
        video=np.array([r["video"] for r in pool.records]),
    )
    tier = load_tier(str(micro_tier_path))
    feature_set, _ = embed_pool(pool, tier, cache_dir=root / "cache", device="cpu")
    return pool, truth, feature_set.load(pool)


def _dropped_copies_share(truth: PoolTruth, kept: np.ndarray, dropped: int) -> float:
    everything = np.arange(len(truth.original))
    return (truth.copies_among(everything) - truth.copies_among(kept)) / dropped


def test_semdedup_drops_the_planted_copies_first(planted):
    pool, truth, features = planted
    n_copies = EXACT + NEAR
    selected = select("semdedup", features, Options(ratio=(pool.size - n_copies) / pool.size))
    dropped = pool.size - selected.n
    assert abs(dropped - n_copies) <= 2
    assert _dropped_copies_share(truth, selected.indices, dropped) >= 0.95


def test_meddel_outlier_step_removes_the_planted_outliers_at_the_papers_eps(planted):
    pool, truth, features = planted
    euclidean = select("meddel", features, Options(eta=1.5))  # eta above any cosine: the outlier step alone
    kept = np.zeros(pool.size, bool)
    kept[euclidean.indices] = True
    assert euclidean.info["eps"] == 0.9 and euclidean.info["outlier_distance"] == "euclidean"
    assert not kept[truth.invalid].any()
    assert (~kept & ~truth.invalid).sum() <= 0.03 * pool.size  # and hardly anything else
    # The cosine reading of the same eps is a looser cut (|F - C| = sqrt(2 (1 - cos))): a subset of it.
    cosine = select("meddel", features, Options(eta=1.5, outlier_distance="cosine"))
    assert set(euclidean.indices.tolist()) <= set(cosine.indices.tolist())
    assert cosine.info["outliers"] <= euclidean.info["outliers"]


def test_meddel_then_drops_the_planted_copies_first(planted):
    pool, truth, features = planted
    outliers = select("meddel", features, Options(eta=1.5)).info["outliers"]
    n_copies = EXACT + NEAR
    selected = select("meddel", features, Options(ratio=(pool.size - n_copies - outliers) / pool.size))
    dedup_drops = pool.size - selected.n - selected.info["outliers"]
    assert abs(dedup_drops - n_copies) <= 2
    assert _dropped_copies_share(truth, selected.indices, dedup_drops) >= 0.95


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5])
def test_meddel_never_concentrates_the_planted_outliers(planted, ratio):
    pool, truth, features = planted
    selected = select("meddel", features, Options(ratio=ratio))
    assert truth.invalid[selected.indices].mean() <= truth.invalid.mean()
