"""PostgreSQL stopped and started again under a bounded load of uploads and polls, against a real uvicorn
server and a real Celery worker on Redis: every answer is a success or a 503 with Retry-After (no 500, no
connection dropped without an answer), and every accepted submission completes.

The test runs its own PostgreSQL cluster (initdb in a temporary folder, on a port of its own), never the
shared one on 5432, since it stops it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.db import make_engine, make_session_factory, migrate, session_scope
from app.services.phases import create_benchmark, create_phase
from app.services.teams import create_team, create_token
from tests.server.conftest import MICRO_TIER, REDIS_URL, UNLIMITED, free_port, need_redis, settings_env
from tests.server.procs import poll_submission, start_server, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.redis]

OUTAGE_SECONDS = 8


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


class Cluster:
    """A throw-away PostgreSQL cluster: initdb, start, stop, start again. As root it runs as `postgres`
    (PostgreSQL refuses to run as root)."""

    def __init__(self, folder: Path):
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            pytest.skip("PostgreSQL's initdb / pg_ctl are not installed")
        self.folder, self.port = folder, free_port()
        self.data = folder / "data"
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        folder.mkdir(parents=True, exist_ok=True)
        if self.prefix:
            shutil.chown(folder, "postgres")
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.folder / "pg.log"), "-w", "start"
        )

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=3"


@pytest.fixture
def cluster():
    # directly under the system's temporary folder: pytest's own is closed to other users, `postgres` too
    folder = Path(tempfile.mkdtemp(prefix="delbench-pg-"))
    try:
        built = Cluster(folder)
        built.start()
        yield built
        subprocess.run([*built.prefix, built.pg_ctl, "-D", str(built.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_database_restart_under_load(cluster, tmp_path, pool_dir, pool_ids):
    need_redis()
    from app.settings import Settings

    settings = Settings(
        database_url=cluster.url, broker_url=f"{REDIS_URL}/0", result_backend=f"{REDIS_URL}/1",
        broker_key_prefix=f"dlbt-pg-{uuid.uuid4().hex[:8]}:", data_dir=tmp_path / "data",
        lease_seconds=6, reconcile_seconds=1, progress_interval=0.2, **UNLIMITED,
    )  # fmt: skip
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        benchmark = create_benchmark(session=session, slug="b", name="b")
        create_phase(session=session, benchmark=benchmark, slug="dev", name="dev", pool_dir=pool_dir,
                     tier=str(MICRO_TIER))  # fmt: skip
        _, token = create_token(session=session, team=create_team(session=session, name="team-a"))
    engine.dispose()
    env = settings_env(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = start_server(env, port, tmp_path)
    worker = start_worker(env, "w1", tmp_path)
    headers = {"Authorization": f"Bearer {token}"}
    statuses: list[tuple[str, int]] = []
    dropped: list[str] = []
    accepted: list[int] = []
    stop = threading.Event()

    def record(what: str, response: httpx.Response) -> None:
        statuses.append((what, response.status_code))
        if response.status_code == 503:
            assert response.headers.get("retry-after", "").isdigit(), response.headers

    def poller() -> None:
        with httpx.Client(base_url=base, timeout=15) as client:  # one kept-alive connection throughout
            while not stop.is_set():
                for path in ("/healthz", "/api/v1/submissions", "/api/v1/phases/dev/leaderboard"):
                    try:
                        record(path, client.get(path, headers=headers))
                    except httpx.TransportError as exc:
                        dropped.append(f"{path}: {type(exc).__name__}: {exc}")
                time.sleep(0.05)

    def uploader() -> None:
        with httpx.Client(base_url=base, timeout=15) as client:
            for k in range(4):
                ids = "\n".join(pool_ids[k * 24 : (k + 1) * 24 + 24])
                key = f"restart-test-{k}"  # a retry after a 503 is the same upload
                while not stop.is_set():
                    try:
                        r = client.post("/api/v1/phases/dev/submissions", headers={**headers, "Idempotency-Key": key},
                                        files={"file": (f"s{k}.txt", ids)}, data={"method": f"m{k}"})  # fmt: skip
                    except httpx.TransportError as exc:
                        dropped.append(f"upload {k}: {type(exc).__name__}: {exc}")
                        time.sleep(0.5)
                        continue
                    record("upload", r)
                    if r.status_code == 202:
                        accepted.append(r.json()["id"])
                        break
                    time.sleep(0.5)
                time.sleep(1.5)  # spread the uploads over the outage

    threads = [
        threading.Thread(target=poller),
        threading.Thread(target=poller),
        threading.Thread(target=uploader),
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(2)
        cluster.stop()
        time.sleep(OUTAGE_SECONDS)
        cluster.start()
        threads[2].join(timeout=60)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert dropped == [], (dropped[:5], api.tail())
        assert "Exception in ASGI application" not in api.log_path.read_text(errors="replace"), api.tail()
        codes = {code for _, code in statuses}
        assert codes <= {200, 202, 503}, sorted({(w, c) for w, c in statuses if c not in (200, 202, 503)})
        assert 503 in codes and 200 in codes  # the outage was seen, and so was the service on both sides
        assert len(set(accepted)) == 4
        for sid in set(accepted):
            poll_submission(base, token, sid, until={"succeeded"}, timeout=180, procs=[api, worker])
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "database": "ok"}
    finally:
        stop.set()
        worker.stop()
        api.stop()
