"""`delbench select` end to end on a tiny synthetic pool, with features written straight into its cache."""

from __future__ import annotations

import numpy as np
import pytest

from delbench.cli import main as delbench
from evaluator.baselines.features import find_feature_set, write_feature_set
from evaluator.store import open_pool
from evaluator.synth import generate


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool") / "pool"
    generate(out, seed=0, size=96, resolution=32, version=1)  # 4 videos of 24 frames
    pool = open_pool(out)
    rng = np.random.default_rng(0)
    # Frames of a video share a direction, so the dedup methods have near duplicates to find.
    videos = rng.standard_normal((4, 16))
    owner = np.array([int(r["video"].rsplit("v", 1)[1]) for r in pool.records])
    embeddings = videos[owner] + 0.5 * rng.standard_normal((pool.size, 16))
    meta = {"encoder_source": "full-pool", "tier": "test", "tier_hash": "t" * 64}
    write_feature_set(pool, "testkey", meta, embeddings, rng.random(pool.size))
    return out


def read_ids(path):
    return path.read_text().splitlines()


@pytest.mark.parametrize("method", ["random", "meddel", "semdedup", "hard", "prototype"])
def test_select_writes_ids_and_reports_r(pool_dir, tmp_path, capsys, method):
    out = tmp_path / "ids.txt"
    args = [
        "select",
        "--pool",
        str(pool_dir),
        "--method",
        method,
        "--ratio",
        "0.25",
        "--out",
        str(out),
        "--k",
        "4",
    ]
    assert delbench(args) == 0
    ids = read_ids(out)
    pool = open_pool(pool_dir)
    assert set(ids) <= set(pool.ids) and len(set(ids)) == len(ids)
    assert abs(len(ids) / pool.size - 0.25) <= 0.01
    printed = capsys.readouterr().out
    assert f"kept {len(ids)} of 96 (R = {len(ids) / 96:.2%}, asked 25.00%)" in printed
    # Same command, same bytes.
    again = tmp_path / "again.txt"
    assert delbench(args[:-3] + [str(again), "--k", "4"]) == 0
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "best", "--ratio", "0.5"], "unknown method 'best'"),
        (["--method", "random", "--ratio", "1.5"], "ratio must be in (0, 1]"),
        (["--method", "random", "--ratio", "0"], "ratio must be in (0, 1]"),
        (["--method", "random"], "random needs --ratio"),
        (["--method", "meddel", "--ratio", "0.5", "--embeddings", "nope"], "no features 'nope'"),
        (["--method", "meddel", "--ratio", "0.5", "--tier", "synth-tiny"], "run `delbench embed"),
        (["--method", "semdedup", "--ratio", "0.01", "--k", "8"], "lower --k"),
    ],
)
def test_select_errors_are_one_line(pool_dir, tmp_path, capsys, args, message):
    out = tmp_path / "ids.txt"
    code = None
    try:
        code = delbench(["select", "--pool", str(pool_dir), "--out", str(out), *args])
    except SystemExit as exc:  # argparse rejects a bad --ratio value itself
        code = exc.code
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not out.exists()


def test_select_refuses_features_of_another_pool(pool_dir, tmp_path, capsys):
    other = tmp_path / "other"
    generate(other, seed=1, size=96, resolution=32)
    feature_set = find_feature_set(pool_dir, key="testkey")
    (other / "embeddings").mkdir()
    for path in (
        feature_set.embeddings_path,
        feature_set.losses_path,
        pool_dir / "embeddings" / "testkey.json",
    ):
        (other / "embeddings" / path.name).write_bytes(path.read_bytes())
    code = delbench(
        ["select", "--pool", str(other), "--method", "meddel", "--ratio", "0.5", "--out", str(tmp_path / "x")]
    )
    assert code == 1 and "computed for another pool" in capsys.readouterr().err


def test_select_missing_pool(tmp_path, capsys):
    assert (
        delbench(
            [
                "select",
                "--pool",
                str(tmp_path / "none"),
                "--method",
                "random",
                "--ratio",
                "0.5",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    assert "not a DELBench pool" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seeds", "message"),
    [("0,x", "--seeds: '0,x' is not a comma-separated list of integers"), ("1,1", "repeats a seed")],
)
def test_baselines_bad_seeds_are_a_usage_error(pool_dir, tmp_path, capsys, seeds, message):
    out = tmp_path / "table"
    code = delbench(["baselines", "--pool", str(pool_dir), "--tier", "tests/tiers/micro.json",
                     "--methods", "random", "--ratios", "0.5", "--seeds", seeds, "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (out / "baselines.json").exists()


def test_one_feature_set_per_seed_is_picked_by_the_tier_seed(tmp_path):
    """`delbench baselines --seeds` leaves one full-pool feature set per seed; the tier's seed picks one."""
    from evaluator.baselines.features import FeaturesError

    pool_path = tmp_path / "pool"
    generate(pool_path, seed=0, size=32, resolution=32)
    pool = open_pool(pool_path)
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        meta = {"encoder_source": "full-pool", "tier": "t", "tier_hash": "h" * 64, "pretrain_seed": seed}
        write_feature_set(pool, f"seed{seed}", meta, rng.standard_normal((pool.size, 4)), None)
    assert find_feature_set(pool_path, tier_hash="h" * 64, pretrain_seed=1).key == "seed1"
    assert find_feature_set(pool_path, tier_hash="h" * 64, pretrain_seed=0).key == "seed0"
    with pytest.raises(FeaturesError, match=r"seed0 \(t, full-pool, pretrain seed 0\).*--embeddings KEY"):
        find_feature_set(pool_path, tier_hash="h" * 64)


def test_baselines_refuses_another_table_in_one_line(pool_dir, tmp_path, capsys):
    out = tmp_path / "table"
    out.mkdir()
    stored = '{"format": "delbench-baselines-seeds/1", "tier": "micro", "tier_hash": "abc", "seeds": [0, 1], "rows": []}'
    (out / "baselines.json").write_text(stored)
    code = delbench(["baselines", "--pool", str(pool_dir), "--tier", "tests/tiers/micro.json",
                     "--methods", "random", "--ratios", "0.5", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "holds the table over seeds [0, 1]; seed 0's own table is" in err
    assert (out / "baselines.json").read_text() == stored
