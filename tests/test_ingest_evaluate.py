"""An evaluation runs on an ingested fixture pool and ingested fixture tasks, with no code change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.store import TASK_NAMES, open_pool
from tests.ingest_fixtures import ingest_pool, ingest_task, make_pool_tree, make_task_tree

REPO = Path(__file__).resolve().parents[1]
MICRO_TIER = REPO / "tests" / "tiers" / "micro.json"


@pytest.mark.slow
def test_evaluate_runs_on_ingested_real_layouts(tmp_path, capsys):
    pool_dir, tasks_dir = tmp_path / "pool", tmp_path / "tasks"
    for source in ("hyper-kvasir", "kvasir-capsule", "gastrovision"):
        code, _, err = ingest_pool(capsys, make_pool_tree(source, tmp_path / source), pool_dir)
        assert code == 0, err
    for name in TASK_NAMES:
        code, _, err = ingest_task(
            capsys, name, make_task_tree(name, tmp_path / "downloads" / name).root, tasks_dir
        )
        assert code == 0, err
    pool_ids = open_pool(pool_dir).ids
    selected = pool_ids[::2]
    (tmp_path / "ids.txt").write_text("\n".join(selected) + "\n")

    argv = ["evaluate", "--pool", pool_dir, "--tasks", tasks_dir, "--ids", tmp_path / "ids.txt"]
    argv += ["--tier", MICRO_TIER, "--out", tmp_path / "r.json", "--cache", tmp_path / "cache", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "delbench", *map(str, argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["datasets"]) == set(TASK_NAMES)
    assert (result["n_selected"], result["pool_size"]) == (len(selected), len(pool_ids))
    for name, scores in result["datasets"].items():
        assert 0.0 <= scores["miou"] <= 1.0, name
