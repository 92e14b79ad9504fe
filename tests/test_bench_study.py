"""bench/synth_study.py's subsets: what each condition draws, checked on the small synthetic pool (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.synth_study import subsets
from evaluator.store import open_pool
from evaluator.synth import disruptive_frames, generate


@pytest.fixture(scope="module")
def v1_pool(tmp_path_factory):
    """The study's conditions were written for the uniform pool (version 1) and are checked on it."""
    out = tmp_path_factory.mktemp("v1") / "pool"
    generate(out, seed=0, size=480, resolution=32, version=1)
    return out


def test_each_condition_draws_what_it_says(v1_pool):
    small_pool = v1_pool
    pool = open_pool(small_pool)
    chosen = subsets(pool, 0.5, ["none", "random", "full"])
    assert chosen["none"] == ("no pretraining", None)
    assert chosen["full"][1].tolist() == list(range(pool.size))
    n = len(chosen["random"][1])
    assert n == pool.size // 2
    disruptive = disruptive_frames(small_pool, pool.ids)
    with pytest.raises(
        ValueError, match="frames, but the pool has"
    ):  # half the pool: more than its disruptive
        subsets(pool, 0.5, ["disruptive"])
    chosen = subsets(pool, 0.1, ["random", "clean", "disruptive", "spread"])
    n = len(chosen["random"][1])
    clean, bad = chosen["clean"][1], chosen["disruptive"][1]
    assert len(clean) == n == len(set(clean.tolist())) and not disruptive[clean].any()
    assert len(bad) == n == len(set(bad.tolist())) and disruptive[bad].all()
    spread = chosen["spread"][1]
    videos = {r["video"] for r in pool.records}
    assert len(spread) == n == len(set(spread.tolist()))
    assert {pool.records[i]["video"] for i in spread} == videos  # every video at least once
    # Seeded: the same subsets in every run.
    again = subsets(pool, 0.1, ["spread", "clean"])
    assert np.array_equal(again["spread"][1], spread) and np.array_equal(again["clean"][1], clean)


def test_impossible_conditions_are_one_clear_error(v1_pool):
    pool = open_pool(v1_pool)
    with pytest.raises(ValueError, match="cannot cover 20 videos"):
        subsets(pool, 0.02, ["spread"])
    with pytest.raises(ValueError, match="unknown bogus"):
        subsets(pool, 0.1, ["random", "bogus"])
