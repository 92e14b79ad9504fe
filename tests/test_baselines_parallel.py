"""scripts/baselines_parallel.sh at the micro tier on CPU, two seeds: every (seed, method, ratio) in its own
process, the per-seed rows merged where `delbench baselines --seeds` finds them, and the mean ± sd table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from evaluator.synth import generate

REPO = Path(__file__).resolve().parents[1]


def test_parallel_table_over_two_seeds(tmp_path):
    out = tmp_path / "table"
    generate(out / "pool", seed=0, size=96, resolution=32)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RATIOS": "0.25",
        "METHODS": "random,prototype",
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        ["bash", "scripts/baselines_parallel.sh", str(out), "cpu", "tests/tiers/micro.json", "0,1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    # The final `delbench baselines` only renders: every row was evaluated by the parallel processes.
    assert "reused from" in run.stderr and "evaluating" not in run.stderr, run.stderr[-2000:]
    for seed in (0, 1):
        doc = json.loads((out / f"seed-{seed}" / "baselines.json").read_text())
        assert doc["seed"] == seed
        assert sorted(r["method"] for r in doc["rows"]) == [
            "full pool",
            "no pretraining",
            "prototype",
            "random",
        ]
    table = json.loads((out / "baselines.json").read_text())
    assert table["seeds"] == [0, 1] and len(table["rows"]) == 4
    prototype = next(r for r in table["rows"] if r["method"] == "prototype")
    assert len(prototype["mean_miou"]["values"]) == 2 and "miou_vs_random" in prototype
    assert "mean ± sd over the seeds" in run.stdout
