"""A worker that pretrains over several local processes (`DELBENCH_PRETRAIN_PROCESSES`, torchrun, gloo on
CPU): the same protocol as one process, the main rank's progress on the API while the ranks run, withdrawing
stops them, and a rank that dies fails the stage with the ranks' output instead of hanging it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from app.models import EvaluationStage
from tests.server.conftest import MICRO_TIER, free_port, seed_phase
from tests.server.procs import poll_submission, start_server, start_worker, wait_until
from tests.test_distributed import descendants

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", ["embedded"], indirect=True)]


def _upload(base: str, token: str, ids_file: Path) -> int:
    with open(ids_file, "rb") as f:
        r = httpx.post(f"{base}/api/v1/phases/dev/submissions", headers={"Authorization": f"Bearer {token}"},
                       files={"file": (ids_file.name, f)}, timeout=30)  # fmt: skip
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_worker_pretrains_over_two_processes_with_the_same_protocol(stack, pool_dir, every_10th, tmp_path):
    seeded = seed_phase(stack, pool_dir)
    ids_file, reference = every_10th
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    worker = start_worker({**stack.env, "DELBENCH_PRETRAIN_PROCESSES": "2"}, "ranks", tmp_path)
    try:
        sid = _upload(base, seeded.token, ids_file)
        done = poll_submission(base, seeded.token, sid, until={"succeeded"}, timeout=300, procs=[api, worker])
    finally:
        worker.stop()
        api.stop()
    (curve_file,) = (stack.settings.data_dir / "artifacts" / "cache").glob("encoders/*/loss_curve.json")
    assert json.loads(curve_file.read_text())["ranks"] == 2  # written by the ranks' main process
    with stack.session() as session:
        ours = (
            session.query(EvaluationStage)
            .filter_by(submission_id=sid, name="pretrain")
            .one()
            .detail["loss_curve"]
        )
    theirs = reference["loss_curve"]
    assert [s for s, _ in ours] == [s for s, _ in theirs]
    assert [round(v, 4) for _, v in ours] == [round(v, 4) for _, v in theirs]
    # weights equal up to float summation order (tests/test_distributed.py): the finetunes' scores with them
    assert done["results"]["mean_miou"] == pytest.approx(reference["mean_miou"], abs=0.01)


def test_a_rank_that_dies_fails_the_stage_instead_of_hanging_it(stack, pool_dir, pool_ids, tmp_path):
    seeded = seed_phase(stack, pool_dir)
    ids_file = tmp_path / "every-3rd.txt"
    ids_file.write_text("\n".join(pool_ids[::3]) + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    worker = start_worker({**stack.env, "DELBENCH_PRETRAIN_PROCESSES": "2"}, "ranks", tmp_path)
    try:
        sid = _upload(base, seeded.token, ids_file)

        def a_rank() -> int | None:
            for pid in descendants(worker.popen.pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if (
                    b"torch.distributed.run" not in cmdline
                    and b"pretrain" in cmdline
                    and "RANK=1" in _environ(pid)
                ):
                    return pid
            return None

        rank = wait_until(a_rank, timeout=240, what="the second rank", proc_logs=[api, worker])
        time.sleep(2)  # into its steps
        os.kill(rank, signal.SIGKILL)
        started = time.monotonic()
        failed = poll_submission(base, seeded.token, sid, until={"failed"}, timeout=180, procs=[api, worker])
        assert time.monotonic() - started < 150
        assert "pretraining over 2 processes ended with exit status" in failed["error"], failed["error"]
        with stack.session() as session:
            stage = session.query(EvaluationStage).filter_by(submission_id=sid, name="pretrain").one()
            assert stage.status.value == "failed"
        assert worker.alive()  # the worker itself carries on
    finally:
        worker.stop()
        api.stop()


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")
    except OSError:
        return ""


def test_progress_from_the_ranks_then_withdrawing_stops_them(stack, pool_dir, pool_ids, tmp_path):
    long_tier = json.loads(MICRO_TIER.read_text())
    long_tier["pretrain"]["samples_seen"] = 32 * 4000  # long enough to be seen running, then withdrawn
    tier_path = tmp_path / "micro-long.json"
    tier_path.write_text(json.dumps(long_tier))
    seeded = seed_phase(stack, pool_dir, tier=str(tier_path))
    ids_file = tmp_path / "every-5th.txt"
    ids_file.write_text("\n".join(pool_ids[::5]) + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(stack.env, port, tmp_path)
    worker = start_worker({**stack.env, "DELBENCH_PRETRAIN_PROCESSES": "2"}, "ranks", tmp_path)
    headers = {"Authorization": f"Bearer {seeded.token}"}
    try:
        sid = _upload(base, seeded.token, ids_file)

        def ranks() -> list[int]:
            return [pid for pid in descendants(worker.popen.pid) if "RANK=" in _environ(pid)]

        wait_until(lambda: len(ranks()) == 2, timeout=240, what="two ranks", proc_logs=[api, worker])

        def pretrain_progress() -> float:
            sub = httpx.get(f"{base}/api/v1/submissions/{sid}", headers=headers, timeout=10).json()
            return next((s["progress"] for s in sub["stages"] if s["name"] == "pretrain"), 0.0)

        seen = wait_until(lambda: 0 < pretrain_progress() < 1 and pretrain_progress(), timeout=240,
                          what="the main rank's progress on the API", proc_logs=[api, worker])  # fmt: skip
        assert 0 < seen < 1
        r = httpx.post(
            f"{base}/api/v1/submissions/{sid}/cancel", headers=headers, json={"reason": "wrong file"}
        )
        assert r.status_code == 200, r.text
        wait_until(lambda: not ranks(), timeout=90, what="the ranks to stop", proc_logs=[api, worker])
        assert worker.alive()
    finally:
        worker.stop()
        api.stop()
