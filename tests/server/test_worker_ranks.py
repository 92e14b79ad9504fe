"""A worker that pretrains over several local processes (`DELBENCH_PRETRAIN_PROCESSES`, torchrun, gloo on
CPU): the same protocol as one process, the main rank's progress on the API while the ranks run, withdrawing
stops them, and a rank that dies fails the stage with the ranks' output instead of hanging it."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.models import EvaluationStage
from tests.server.conftest import MICRO_TIER, free_port, seed_phase
from tests.server.procs import Proc, poll_submission, start_server, start_worker, wait_until
from tests.test_distributed import descendants

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]


@dataclass
class Served:
    base: str
    token: str
    submission_id: int
    api: Proc
    worker: Proc

    def submission(self) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(
            f"{self.base}/api/v1/submissions/{self.submission_id}", headers=headers, timeout=10
        ).json()

    def ranks(self) -> list[int]:
        """The worker's torchrun ranks (the processes torchrun gave a RANK)."""
        return [pid for pid in descendants(self.worker.popen.pid) if "RANK=" in _environ(pid)]


@contextmanager
def serving(stack, pool_dir: Path, tmp_path: Path, ids: list[str], tier: Path = MICRO_TIER):
    """A phase on `tier`, a real API and a worker pretraining over 2 processes, and `ids` uploaded."""
    seeded = seed_phase(stack, pool_dir, tier=str(tier))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    worker = start_worker({**stack.env, "DELBENCH_PRETRAIN_PROCESSES": "2"}, "ranks", tmp_path)
    try:
        r = httpx.post(f"{base}/api/v1/phases/dev/submissions", headers={"Authorization": f"Bearer {seeded.token}"},
                       files={"file": ("selection.txt", "\n".join(ids) + "\n")}, timeout=30)  # fmt: skip
        assert r.status_code == 202, r.text
        yield Served(base, seeded.token, r.json()["id"], api, worker)
    finally:
        worker.stop()
        api.stop()


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")
    except OSError:
        return ""


def _pretrain_stage(stack, submission_id: int) -> EvaluationStage:
    with stack.session() as session:
        return session.query(EvaluationStage).filter_by(submission_id=submission_id, name="pretrain").one()


def test_a_worker_pretrains_over_two_processes_with_the_same_protocol(stack, pool_dir, every_10th, tmp_path):
    ids_file, reference = every_10th
    with serving(stack, pool_dir, tmp_path, ids_file.read_text().split()) as served:
        done = poll_submission(served.base, served.token, served.submission_id, until={"succeeded"}, timeout=300,
                               procs=[served.api, served.worker])  # fmt: skip
    (curve_file,) = (stack.settings.data_dir / "artifacts" / "cache").glob("encoders/*/loss_curve.json")
    assert json.loads(curve_file.read_text())["ranks"] == 2  # written by the ranks' main process
    ours, theirs = _pretrain_stage(stack, served.submission_id).detail["loss_curve"], reference["loss_curve"]
    assert [s for s, _ in ours] == [s for s, _ in theirs]
    assert [round(v, 4) for _, v in ours] == [round(v, 4) for _, v in theirs]
    # weights equal up to float summation order (tests/test_distributed.py): the finetunes' scores with them
    assert done["results"]["mean_miou"] == pytest.approx(reference["mean_miou"], abs=0.01)


def test_a_rank_that_dies_fails_the_stage_instead_of_hanging_it(stack, pool_dir, pool_ids, tmp_path):
    with serving(stack, pool_dir, tmp_path, pool_ids[::3]) as served:
        procs = [served.api, served.worker]

        def second_rank() -> int | None:
            return next((pid for pid in served.ranks() if "RANK=1\n" in _environ(pid)), None)

        rank = wait_until(second_rank, timeout=240, what="the second rank", proc_logs=procs)
        time.sleep(2)  # into its steps
        os.kill(rank, signal.SIGKILL)
        started = time.monotonic()
        failed = poll_submission(served.base, served.token, served.submission_id, until={"failed"}, timeout=180,
                                 procs=procs)  # fmt: skip
        assert time.monotonic() - started < 150
        assert "pretraining over 2 processes ended with exit status" in failed["error"], failed["error"]
        assert _pretrain_stage(stack, served.submission_id).status.value == "failed"
        assert served.worker.alive()  # the worker itself carries on


def test_progress_from_the_ranks_then_withdrawing_stops_them(stack, pool_dir, pool_ids, tmp_path):
    long_tier = json.loads(MICRO_TIER.read_text())
    long_tier["pretrain"]["samples_seen"] = 32 * 4000  # long enough to be seen running, then withdrawn
    tier_path = tmp_path / "micro-long.json"
    tier_path.write_text(json.dumps(long_tier))
    with serving(stack, pool_dir, tmp_path, pool_ids[::5], tier=tier_path) as served:
        procs = [served.api, served.worker]
        wait_until(lambda: len(served.ranks()) == 2, timeout=240, what="two ranks", proc_logs=procs)

        def pretrain_progress() -> float | None:
            stages = served.submission()["stages"]
            value = next((s["progress"] for s in stages if s["name"] == "pretrain"), 0.0)
            return value if 0 < value < 1 else None

        wait_until(
            pretrain_progress, timeout=240, what="the main rank's progress on the API", proc_logs=procs
        )
        r = httpx.post(f"{served.base}/api/v1/submissions/{served.submission_id}/cancel", json={"reason": "wrong file"},
                       headers={"Authorization": f"Bearer {served.token}"})  # fmt: skip
        assert r.status_code == 200, r.text
        wait_until(lambda: not served.ranks(), timeout=90, what="the ranks to stop", proc_logs=procs)
        assert served.worker.alive()
