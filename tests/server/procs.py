"""Real server and worker processes for the end-to-end tests, and polling with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from tests.server.conftest import REPO, child_env, delbench_cmd

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1, proc_logs=()
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` (and the processes' logs) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        dead = [p for p in proc_logs if not p.alive()]
        if dead:
            raise AssertionError(
                f"{dead[0].name} exited ({dead[0].popen.returncode}) while waiting for {what}:\n{dead[0].tail()}"
            )
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} log tail ---\n{p.tail()}" for p in proc_logs)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(interval)  # the poll interval of the loop above, not a wait for the work itself


class Proc:
    """A child process in its own session (so signals reach it and its children alone), logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, cwd: Path = REPO):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=child_env(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group: no clean-up code of the child runs."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.alive():
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self.log.close()
        return self.popen.returncode


def start_server(env: dict[str, str], port: int, log_dir: Path) -> Proc:
    proc = Proc("api", delbench_cmd("serve", "--port", str(port), "--log-level", "warning"), env, log_dir)

    def healthy() -> bool:
        if not proc.alive():
            raise AssertionError(f"the API exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=60, what="the API's /healthz", interval=0.2, proc_logs=[proc])
    return proc


def start_worker(env: dict[str, str], name: str, log_dir: Path) -> Proc:
    return Proc(name, delbench_cmd("worker", "--name", f"{name}@test", "--loglevel", "INFO"), env, log_dir)


def poll_submission(
    base: str, token: str, submission_id: int, *, until: set[str], timeout: float, procs=()
) -> dict:
    headers = {"Authorization": f"Bearer {token}"}

    def check() -> dict | None:
        body = httpx.get(f"{base}/api/v1/submissions/{submission_id}", headers=headers, timeout=10).json()
        if body["status"] == "failed" and "failed" not in until:
            raise AssertionError(f"submission failed: {body['error']}\n{body['log_tail']}")
        return body if body["status"] in until else None

    return wait_until(
        check,
        timeout=timeout,
        what=f"submission {submission_id} to reach {until}",
        interval=0.3,
        proc_logs=procs,
    )
