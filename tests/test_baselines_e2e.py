"""`delbench embed`, `select` and `baselines` end to end on a small synthetic pool with the micro tier."""

from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from delbench.cli import main as delbench
from evaluator.baselines.features import find_feature_set
from evaluator.protocol import encoder_cache_key
from evaluator.selection import selection_hash
from evaluator.tier import load_tier
from tests.conftest import MICRO_TIER


def run_cli(*args) -> SimpleNamespace:
    """`delbench ARGS...` in this process (a fresh interpreter per call would cost seconds of imports)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = delbench([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(scope="module")
def embedded(small_pool, tmp_path_factory):
    """The small pool embedded once by its micro-tier full-pool encoder: (pool dir, cache dir, stdout)."""
    cache = tmp_path_factory.mktemp("cache")
    out = run_cli("embed", "--pool", small_pool, "--tier", MICRO_TIER, "--cache", cache, "--quiet")
    assert out.returncode == 0, out.stderr
    return small_pool, cache, out.stdout


def test_embed_caches_features_beside_the_pool(embedded, small_pool_ids):
    pool_dir, cache, stdout = embedded
    tier = load_tier(MICRO_TIER)
    feature_set = find_feature_set(pool_dir, tier_hash=tier.hash)
    assert "embeddings computed: 480 x 48 with MAE losses" in stdout
    embeddings = np.load(feature_set.embeddings_path)
    losses = np.load(feature_set.losses_path)
    assert embeddings.shape == (480, 48) and losses.shape == (480,)
    assert np.all(np.isfinite(embeddings)) and np.all(losses > 0)
    assert len(np.unique(embeddings.round(4), axis=0)) > 400  # distinct images, distinct embeddings
    # The encoder is the full-pool pretraining the protocol caches for the 100 % row.
    key = encoder_cache_key(selection_hash(small_pool_ids), tier, tier.seed)
    assert feature_set.meta["encoder_path"] == str(cache / "encoders" / key / "encoder.pt")
    again = run_cli("embed", "--pool", pool_dir, "--tier", MICRO_TIER, "--cache", cache, "--quiet")
    assert again.returncode == 0 and "embeddings cached" in again.stdout


def test_select_every_method_from_the_embeddings(embedded, tmp_path):
    pool_dir, _, _ = embedded
    for method in ("meddel", "semdedup", "hard", "prototype", "random"):
        out_file = tmp_path / f"{method}.txt"
        out = run_cli(
            "select",
            "--pool",
            pool_dir,
            "--method",
            method,
            "--ratio",
            "0.2",
            "--out",
            out_file,
            "--tier",
            MICRO_TIER,
        )
        assert out.returncode == 0, out.stderr
        ids = out_file.read_text().split()
        assert abs(len(ids) / 480 - 0.2) <= 0.01, (method, len(ids))
        if method in ("hard", "prototype", "random"):
            assert len(ids) == 96
        assert "R = " in out.stdout


def test_embed_with_a_checkpoint_lacking_the_decoder(embedded, tmp_path):
    import torch

    pool_dir, _, _ = embedded
    saved = torch.load(
        json.loads(next((pool_dir / "embeddings").glob("*.json")).read_text())["encoder_path"],
        weights_only=False,
    )
    saved.pop("decoder")
    checkpoint = tmp_path / "encoder-only.pt"
    torch.save(saved, checkpoint)
    out = run_cli("embed", "--pool", pool_dir, "--tier", MICRO_TIER, "--checkpoint", checkpoint, "--quiet")
    assert out.returncode == 0, out.stderr
    assert "no losses" in out.stdout
    missing = run_cli("embed", "--pool", pool_dir, "--tier", MICRO_TIER, "--checkpoint", tmp_path / "none.pt")
    assert (
        missing.returncode == 1
        and "no such encoder file" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    garbage = run_cli(
        "embed", "--pool", pool_dir, "--tier", MICRO_TIER, "--checkpoint", tmp_path / "garbage.pt"
    )
    assert garbage.returncode == 1 and "not an encoder for tier micro" in garbage.stderr


def test_baselines_command_writes_the_table(embedded, tmp_path):
    pool_dir, cache, _ = embedded
    out_dir = tmp_path / "table"
    out = run_cli("baselines", "--pool", pool_dir, "--tier", MICRO_TIER, "--cache", cache, "--ratios", "0.2",
                  "--methods", "hard,meddel", "--out", out_dir, "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads((out_dir / "baselines.json").read_text())
    rows = {row["method"]: row for row in doc["rows"]}
    assert list(rows) == ["full pool", "no pretraining", "hard", "meddel"]
    assert rows["full pool"]["R"] == 1.0 and rows["no pretraining"]["mean_normdel"] is None
    assert rows["hard"]["n"] == 96 and abs(rows["meddel"]["R"] - 0.2) <= 0.01
    for row in doc["rows"]:
        assert 0 < row["mean_miou"] < 1 and len(row["datasets"]) == 8
    markdown = (out_dir / "baselines.md").read_text()
    assert "| hard | 20% | 20.00% | 96 |" in markdown
    assert "[4/4] meddel @ 0.2" in out.stderr  # progress lines
