"""scripts/gpu_measure.sh's Python parts run with only what the GPU machine's image holds.

The device image (the device tool's KINDS.md) has torch, timm, numpy, pillow, tqdm, httpx and pytest, but
none of the server's packages nor faiss, and nothing can be installed there: a stray import of one of them
would cost a GPU session its device time. Each part runs here in a subprocess in which those packages cannot
be imported, at the smallest sizes, on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.graph_outcome import graph_outcomes, label
from bench.pretrain_throughput import variants
from evaluator.tier import load_tier

ROOT = Path(__file__).resolve().parents[1]
# Top-level modules of the `server` extra and faiss-cpu: absent from the device image.
ABSENT_ON_DEVICE = [
    "alembic", "celery", "fastapi", "faiss", "kombu", "multipart", "playwright", "psycopg", "pydantic",
    "pydantic_settings", "redis", "sqlalchemy", "starlette", "swagger_ui_bundle", "uvicorn",
]  # fmt: skip

RUN_WITHOUT = """
import importlib.abc, runpy, sys
absent = set(sys.argv[1].split(","))
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in absent:
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machine)", name=name)
sys.meta_path.insert(0, Absent())
sys.argv = sys.argv[2:]
if sys.argv[0] == "pytest":
    import pytest
    sys.exit(pytest.main(sys.argv[1:]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_as_on_device(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT, ",".join(ABSENT_ON_DEVICE), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_the_blocker_blocks(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nimport sqlalchemy.orm\n")
    with pytest.raises(AssertionError, match="No module named 'sqlalchemy' \\(absent on the GPU machine\\)"):
        run_as_on_device(str(probe))


@pytest.mark.slow
def test_throughput_and_evaluation_time_parts(tmp_path):
    rates = tmp_path / "pretrain_throughput.json"
    out = run_as_on_device(
        "bench/pretrain_throughput.py", "--tiers", "synth-tiny", "--warmup", "1", "--steps", "1",
        "--rounds", "1", "--images", "64", "--workers", "1", "--device", "cpu", "--json", str(rates),
        "--no-graph",  # as the throughput part passes it
    )  # fmt: skip
    assert "ratio DELBench / reference" in out
    assert json.loads(rates.read_text())
    out = run_as_on_device(
        "bench/evaluation_time.py", "--pretrain-from", str(rates), "--steps", "1", "--warmup", "1",
        "--device", "cpu",
    )  # fmt: skip
    assert "(bench/pretrain_throughput.py" in out and "total" in out


@pytest.mark.slow
def test_profile_and_gpu_test_parts():
    out = run_as_on_device(
        "bench/profile_pretrain.py", "--device", "cpu", "--tier", "tests/tiers/micro.json",
        "--warmup", "1", "--steps", "1",
    )  # fmt: skip
    assert "| category |" in out
    out = run_as_on_device(
        "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "-m", "gpu",
        "tests/test_cuda_graph.py", "tests/test_baselines_gpu.py",
    )  # fmt: skip
    assert "tests collected" in out, out  # exit 0: every GPU test module imports and some were collected


def test_throughput_variants_add_the_graphed_step_on_cuda_only():
    tier = load_tier("paper")
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    labels = [(label, t.cuda_graph) for label, t in variants(tier, cuda, graph=True)]
    assert labels == [("", False), ("+graph", True)]
    assert [label for label, _ in variants(tier, cuda, graph=False)] == [""]
    assert [label for label, _ in variants(tier, torch.device("cpu"), graph=True)] == [""]
    graphed = variants(tier, cuda, graph=True)[1][1]
    assert graphed.pretrain == tier.pretrain and graphed.model == tier.model  # only the step's replay differs


def test_graph_figures_say_when_the_step_did_not_replay_as_a_graph():
    from evaluator.cuda_graph import CAPTURE_FAILED, CAPTURED, log

    with graph_outcomes() as outcomes:
        assert label(outcomes) == " [no CUDA graph captured: eager figures]"
        log.info("%s: the MAE step at batch %d replays as one graph", CAPTURED, 16)  # as GraphedMAEStep logs
        assert outcomes == ["captured"] and label(outcomes) == ""
        log.warning("%s; training eagerly", CAPTURE_FAILED)
    log.info("%s: after the block", CAPTURED)
    assert outcomes == ["captured", "failed"]
    assert label(outcomes) == " [CUDA graph capture FAILED: eager figures]"


def test_gpu_measure_names_its_parts(tmp_path):
    done = subprocess.run(
        ["bash", "scripts/gpu_measure.sh", str(tmp_path), "throughputs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "unknown part 'throughputs': throughput, graph, profile, tests or all"
