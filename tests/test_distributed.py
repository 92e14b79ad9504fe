"""Data-parallel pretraining on CPU with gloo, launched by torchrun as a user would: one rank, two ranks on
one host, two "hosts" joined by a c10d rendezvous on 127.0.0.1, and a two-rank run killed mid-way and
resumed by a single process. Every one is the same protocol: the same loss curve and, within float
summation order, the same encoder weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import MICRO_TIER, REPO
from tests.server.conftest import free_port

pytestmark = pytest.mark.slow

WEIGHT_TOLERANCE = 1e-4  # float32 sums taken in another order over a few dozen steps


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_pool, small_pool_ids):
    folder = tmp_path_factory.mktemp("ddp")
    ids = folder / "ids.txt"
    ids.write_text("\n".join(small_pool_ids[::4]) + "\n")
    tier = json.loads(Path(MICRO_TIER).read_text())
    tier["pretrain"].update(samples_seen=32 * 48, checkpoint_every=8)  # 48 steps: room to be killed mid-way
    tier_path = folder / "micro-48.json"
    tier_path.write_text(json.dumps(tier))
    return small_pool, ids, tier_path


def launch(setup, cache: Path, *torchrun: str) -> subprocess.Popen:
    pool, ids, tier = setup
    args = [sys.executable, "-m", "torch.distributed.run", *torchrun, "-m", "delbench", "pretrain",
            "--pool", str(pool), "--ids", str(ids), "--tier", str(tier), "--cache", str(cache), "--quiet"]  # fmt: skip
    return subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (a killed launcher does not take its ranks with it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def finished(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def encoder(cache: Path) -> tuple[dict, list]:
    (path,) = cache.glob("encoders/*/encoder.pt")
    curve = json.loads(path.with_name("loss_curve.json").read_text())["loss_curve"]
    return torch.load(path, map_location="cpu", weights_only=False)["encoder"], curve


def assert_same(a: tuple[dict, list], b: tuple[dict, list]) -> None:
    (wa, ca), (wb, cb) = a, b
    assert [s for s, _ in ca] == [s for s, _ in cb]
    assert [round(v, 4) for _, v in ca] == [round(v, 4) for _, v in cb]
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < WEIGHT_TOLERANCE


@pytest.fixture(scope="module")
def one_rank(setup, tmp_path_factory):
    cache = tmp_path_factory.mktemp("one")
    finished(launch(setup, cache, "--nproc_per_node", "1", "--master_port", str(free_port())))
    return encoder(cache)


def test_two_ranks_on_one_host_are_one_rank(setup, one_rank, tmp_path):
    out = finished(launch(setup, tmp_path, "--nproc_per_node", "2", "--master_port", str(free_port())))
    assert len(out.split()) == 1  # the main rank alone prints the encoder's path
    assert_same(encoder(tmp_path), one_rank)


def test_two_hosts_joined_by_rendezvous_are_one_rank(setup, one_rank, tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    hosts = [
        launch(
            setup,
            tmp_path,
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            endpoint,
            "--rdzv-id",
            "delbench-test",
        )  # fmt: skip
        for _ in range(2)
    ]
    for host in hosts:
        finished(host)
    assert_same(encoder(tmp_path), one_rank)


def test_two_ranks_killed_mid_way_resume_as_one(setup, one_rank, tmp_path):
    run = launch(setup, tmp_path, "--nproc_per_node", "2", "--master_port", str(free_port()))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("encoders/*/work/checkpoint.pt")) and time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()[1][-3000:]
        time.sleep(0.05)
    for pid in [run.pid, *descendants(run.pid)]:  # the launcher and its ranks (each in its own session)
        os.kill(pid, signal.SIGKILL)
    run.wait(timeout=60)
    time.sleep(1)
    assert not list(tmp_path.glob("encoders/*/encoder.pt")), "it finished before it could be killed"
    finished(launch(setup, tmp_path, "--nproc_per_node", "1", "--master_port", str(free_port())))
    assert_same(encoder(tmp_path), one_rank)
