"""Shared fixtures: small synthetic pools generated once per test session, and the toy tier."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.cpu_threads import set_default_wait_policy

REPO = Path(__file__).resolve().parents[1]
MICRO_TIER = REPO / "tests" / "tiers" / "micro.json"

# As `delbench` does: bounded OpenMP spinning (evaluator/cpu_threads.py), since the suite shares its cores with
# its own servers and workers. Read when torch loads, which is after this file.
set_default_wait_policy()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `delbench ARGS...` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "delbench", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def micro_tier_path() -> Path:
    return MICRO_TIER


@pytest.fixture(scope="session")
def small_pool(tmp_path_factory) -> Path:
    """A 480-frame synthetic pool at 32 px (the micro tier's resolution) with its eight tasks."""
    from evaluator.synth import generate

    out = tmp_path_factory.mktemp("pool") / "pool"
    generate(out, seed=0, size=480, resolution=32)
    return out


@pytest.fixture(scope="session")
def small_pool_ids(small_pool) -> list[str]:
    return [json.loads(line)["id"] for line in (small_pool / "manifest.jsonl").read_text().splitlines()]
