"""`delbench demo`: the whole service on embedded defaults, in one command.

SQLite under DATA_DIR, the filesystem broker (kombu's: messages are files under DATA_DIR/broker), a real
Celery worker process consuming it, the synthetic pool (generated on the first run), a demo phase, and the
API on 127.0.0.1:8000. Prints a participant token and a curl command; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

DEMO_PHASE = "demo"


def _env(data: Path) -> dict[str, str]:
    return {
        "DELBENCH_ENVIRONMENT": "development",
        "DELBENCH_DATABASE_URL": f"sqlite:///{data / 'delbench.sqlite'}",
        "DELBENCH_BROKER_URL": "filesystem://",
        "DELBENCH_BROKER_DIR": str(data / "broker"),
        "DELBENCH_RESULT_BACKEND": f"file://{data / 'broker' / 'results'}",
        "DELBENCH_DATA_DIR": str(data),
        "DELBENCH_LEASE_SECONDS": "20",
        "DELBENCH_RECONCILE_SECONDS": "5",
    }


@dataclass(frozen=True)
class DemoBaseline:
    method: str  # the board's method column
    fraction: float
    description: str
    selector: str | None = None  # an evaluator baseline, chosen on the full-pool encoder's features

    @property
    def needs_encoder(self) -> bool:
        """A feature-based selection needs the full-pool encoder; so does, in effect, the full pool itself,
        whose pretraining is that encoder (cached under the same key, so it is trained once)."""
        return self.selector is not None or self.fraction >= 1


# Reference rows of the demo board, so that it is not empty and its rows differ for a reason a reader can
# see: a uniform draw, a reference method at the same R, and the whole pool. Each costs about one
# evaluation at synth-tiny (2-3 minutes on 2 CPU cores); `--no-baselines` skips them.
DEMO_BASELINES = (
    DemoBaseline("random 5%", 0.05, "5% of the pool at random"),
    DemoBaseline(
        "meddel 5%", 0.05, "MedDEL at 5%: invalid frames and near-copies dropped first", selector="meddel"
    ),
    DemoBaseline("full pool", 1.0, "100% of the pool"),
)


def _missing_baselines(session, phase) -> list[DemoBaseline]:
    """The demo baselines the phase has no row for (in any state): a start interrupted before the
    feature-based ones were registered finishes the job at the next start."""
    from app.models import Submission

    have = set(
        session.scalars(
            select(Submission.method).where(Submission.phase_id == phase.id, Submission.is_baseline)
        )
    )
    return [b for b in DEMO_BASELINES if b.method not in have]


def _register_baselines(session, phase, settings, chosen: list[tuple[DemoBaseline, list[str]]]) -> list[int]:
    """Submit the demo's baseline selections through the same service the admin API uses (audited)."""
    from app.services import audit
    from app.services.submissions import SubmissionMeta, baselines_team, create_submission

    team = baselines_team(session=session)
    created = []
    for baseline, ids in chosen:
        submission = create_submission(
            session=session, team=team, phase=phase, data="\n".join(ids).encode(), is_baseline=True,
            meta=SubmissionMeta(
                method=baseline.method, description=baseline.description, allow_selection_download=True,
            ),
            max_bytes=settings.upload_max_bytes,
        )  # fmt: skip
        audit.record(
            session=session, actor="demo", action="register_baseline", target=f"submission:{submission.id}",
            reason="demo start-up: reference rows", detail={"method": baseline.method, "n": submission.n},
        )  # fmt: skip
        created.append(submission.id)
    return created


def _uniform(baseline: DemoBaseline, ids: list[str]) -> list[str]:
    import random

    if baseline.fraction >= 1:
        return list(ids)
    return random.Random(0).sample(ids, max(1, round(baseline.fraction * len(ids))))


def _queue(settings, engine, submission_ids: list[int]) -> None:
    from app.contract import create_celery
    from app.db import make_session_factory, session_scope
    from app.models import Submission
    from app.services.dispatch import dispatch_next

    celery = create_celery(settings)
    with session_scope(make_session_factory(engine)) as session:
        for sid in submission_ids:
            dispatch_next(session=session, celery=celery, submission=session.get(Submission, sid))


def _settings(data: Path):
    from app.settings import Settings

    return Settings(**{k.removeprefix("DELBENCH_").lower(): v for k, v in _env(data).items()})


def _prepare(
    data: Path, tier_arg: str, pool_size: int, baselines: bool = True
) -> tuple[dict[str, str], Path, list[DemoBaseline]]:
    """Pool, database, demo phase and teams; returns the demo's tokens (participant, admin), the same on
    every start, an example selection, and the baselines to register once the full-pool encoder exists
    (`_register_after_encoder`); with none needing it, they are registered and queued here."""
    from app.db import make_engine, make_session_factory, migrate, session_scope
    from app.models import Benchmark, Phase
    from app.services.phases import create_benchmark, create_phase
    from evaluator.store import open_pool
    from evaluator.tier import load_tier

    tier = load_tier(tier_arg)
    pool_dir = data / "pool"
    if not (pool_dir / "pool.json").exists():
        from evaluator.synth import generate

        print(
            f"demo: generating the synthetic pool ({pool_size} frames at {tier.resolution} px) in {pool_dir} ...",
            flush=True,
        )
        generate(pool_dir, seed=0, size=pool_size, resolution=tier.resolution)
    settings = _settings(data)
    (data / "broker" / "results").mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    ids, tier_ref = open_pool(pool_dir).ids, _tier_ref(tier_arg)
    with session_scope(make_session_factory(engine)) as session:
        benchmark = session.scalar(select(Benchmark).where(Benchmark.slug == "delbench-demo"))
        if benchmark is None:
            benchmark = create_benchmark(
                session=session, slug="delbench-demo", name="DELBench demo (synthetic pool)"
            )
        phase = session.scalar(select(Phase).where(Phase.slug == DEMO_PHASE))
        if phase is None:
            phase = create_phase(
                session=session,
                benchmark=benchmark,
                slug=DEMO_PHASE,
                name="Demo",
                pool_dir=pool_dir,
                tier=tier_ref,
            )
        else:
            phase.tier, phase.pool_dir = tier_ref, str(pool_dir.resolve())  # a re-run may name another tier
        missing = _missing_baselines(session, phase) if baselines else []
        # With a row that needs the full-pool encoder, every row waits for it, so that its pretraining
        # has the cores alone: two trainings side by side on a few CPU cores oversubscribe their threads
        # (synth-tiny on 2 vCPUs: a pretraining of 98 s alone was 60 % done after 8 minutes beside another).
        now = [] if any(b.needs_encoder for b in missing) else missing
        new_baselines = _register_baselines(session, phase, settings, [(b, _uniform(b, ids)) for b in now])
        tokens = {
            role: _stable_token(session, name, is_admin=role == "admin", path=data / TOKEN_FILES[role])
            for role, name in (("participant", "demo-team"), ("admin", "demo-organizers"))
        }
    if new_baselines:  # committed above; now queued (the worker started next consumes them first)
        _queue(settings, engine, new_baselines)
        print(f"demo: baseline rows queued: {', '.join(b.method for b in now)}", flush=True)
    engine.dispose()
    example = data / "example-selection.txt"
    example.write_text("\n".join(ids[::10]) + "\n")  # every 10th frame: R = 0.1
    return tokens, example, [b for b in missing if b not in now]


def _tier_ref(tier_arg: str) -> str:
    return str(Path(tier_arg).resolve()) if Path(tier_arg).suffix else tier_arg


class _Helpers:
    """The `delbench embed`/`select` processes the demo runs for its baseline rows, stopped with it. One lock
    covers "stopping?" and "started": a process is either never started or in `procs` when the demo stops."""

    def __init__(self) -> None:
        self.lock, self.stopping, self.procs = threading.Lock(), False, []

    def start(self, cmd: list[str], env: dict[str, str], log) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.procs.append(proc)
            return proc

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
        for proc in self.procs:
            _stop(proc, signal.SIGTERM)


def _register_after_encoder(
    data: Path,
    tier_arg: str,
    pending: list[DemoBaseline],
    env: dict[str, str],
    helpers: _Helpers,
) -> None:
    """Pretrain the full-pool encoder and embed the pool (`delbench embed`, in the worker's encoder cache,
    so that the full-pool row finds it there), choose each feature-based selection (`delbench select`),
    then register and queue the `pending` rows in their order. Runs beside the worker and the API; a failed
    step is reported in one line and leaves the other rows."""
    from app.db import make_engine, make_session_factory, session_scope
    from app.models import Phase
    from evaluator.store import open_pool

    settings, pool_dir, out = _settings(data), data / "pool", data / "baselines"
    out.mkdir(exist_ok=True)
    delbench, tier = [sys.executable, "-m", "delbench"], _tier_ref(tier_arg)

    def run(step: str, *args: str) -> bool:
        with open(out / f"{step}.log", "wb") as log:
            cmd = [*delbench, step, "--pool", str(pool_dir), "--tier", tier, *args]
            proc = helpers.start(cmd, env, log)
            code = proc.wait() if proc else None
        if code not in (0, None) and not helpers.stopping:
            last = (out / f"{step}.log").read_text(errors="replace").strip().splitlines()[-1:]
            print(f"demo: `delbench {step}` for the baseline rows failed: {' '.join(last)}", flush=True)
        return code == 0

    names = ", ".join(b.method for b in pending)
    print(
        f"demo: pretraining the full-pool encoder for the rows {names} (log: {out / 'embed.log'}) ...",
        flush=True,
    )
    embedded = run("embed", "--cache", str(settings.cache_dir), "--quiet")
    chosen = []
    ids = open_pool(pool_dir).ids
    for baseline in pending:
        if baseline.selector is None:
            chosen.append((baseline, _uniform(baseline, ids)))
            continue
        path = out / f"{baseline.selector}-{baseline.fraction:g}.txt"
        if embedded and run(
            "select", "--method", baseline.selector, "--ratio", str(baseline.fraction), "--out", str(path)
        ):
            chosen.append((baseline, path.read_text().split()))
    if helpers.stopping or not chosen:
        return
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            phase = session.scalar(select(Phase).where(Phase.slug == DEMO_PHASE))
            created = _register_baselines(session, phase, settings, chosen)
        _queue(settings, engine, created)
    finally:
        engine.dispose()
    print(f"demo: baseline rows queued: {', '.join(b.method for b, _ in chosen)}", flush=True)


# The demo's tokens, kept in its data folder (mode 600) so that they stay the same across restarts: the
# database holds only their hashes, so a token that is not kept cannot be shown again.
TOKEN_FILES = {"participant": "participant-token", "admin": "admin-token"}


def _stable_token(session, team_name: str, *, is_admin: bool, path: Path) -> str:
    """The token kept at `path` while it still opens `team_name`; else a new one, kept there."""
    from app.errors import ApiError
    from app.models import Team
    from app.services.teams import authenticate, create_team, create_token

    team = session.scalar(select(Team).where(Team.name == team_name)) or create_team(
        session=session, name=team_name, is_admin=is_admin
    )
    if path.exists():
        kept = path.read_text().strip()
        try:
            if authenticate(session=session, token=kept).id == team.id:
                return kept
        except ApiError:  # revoked, or from a database since deleted
            pass
    _, token = create_token(session=session, team=team, label="delbench demo")
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def banner(url: str, tokens: dict[str, str], example: Path, data: Path, tier: str) -> str:
    example_arg = os.path.relpath(example) if not os.path.relpath(example).startswith("..") else example
    return f"""
DELBench demo is running: API {url} (docs {url}/docs), one worker, phase '{DEMO_PHASE}' (tier {tier}).
Leaderboard: {url}/phases/{DEMO_PHASE}

  participant token: {tokens["participant"]}
  admin token:       {tokens["admin"]}   (organizer routes: /api/v1/admin/...)

Both stay the same across restarts (kept in {data}); `delbench demo --info` prints this again.

Submit a selection (every 10th pool frame) and follow it:

  export TOKEN={tokens["participant"]}
  curl -sS -H "Authorization: Bearer $TOKEN" -F file=@{example_arg} -F method=every-10th \\
       {url}/api/v1/phases/{DEMO_PHASE}/submissions
  curl -sS -H "Authorization: Bearer $TOKEN" {url}/api/v1/submissions/ID
  curl -sS {url}/api/v1/phases/{DEMO_PHASE}/leaderboard

As an organizer:

  export ADMIN={tokens["admin"]}
  curl -sS -H "Authorization: Bearer $ADMIN" {url}/api/v1/admin/health

The pool's public listing (IDs to select from): {data / "pool" / "manifest.jsonl"}
Ctrl-C stops the demo.
"""


def _wait_worker(data: Path, worker: subprocess.Popen, timeout: float = 120) -> None:
    """Until the demo's worker has reported in (its heartbeat row): its start-up output is then behind us,
    so the banner printed next is the last thing on the screen."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            with sqlite3.connect(data / "delbench.sqlite") as db:
                if db.execute("SELECT 1 FROM worker_heartbeats WHERE name LIKE 'demo@%'").fetchone():
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.2)  # poll interval


def _wait_healthy(url: str, api: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise SystemExit(f"the API exited with status {api.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # poll interval
    raise SystemExit(f"the API did not answer on {url} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, sig: int, timeout: float = 15) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"delbench {command}", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="default: %(default)s")
    parser.add_argument(
        "--tier", default="synth-tiny", help="tier name or tier JSON path (default: %(default)s)"
    )
    parser.add_argument(
        "--pool-size", type=int, default=4800, help="frames of the synthetic pool, on first run"
    )
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="do not register the baseline rows (random 5%%, meddel 5%%, full pool)",
    )
    parser.add_argument(
        "--info", action="store_true", help="print the running demo's tokens and commands again, and exit"
    )
    args = parser.parse_args(argv)

    data = args.data_dir.resolve()
    url = f"http://{args.host}:{args.port}"
    if args.info:
        files = {role: data / name for role, name in TOKEN_FILES.items()}
        if not all(f.exists() for f in files.values()):
            raise SystemExit(f"no demo in {data}: start one with `delbench demo`")
        tokens = {role: f.read_text().strip() for role, f in files.items()}
        print(banner(url, tokens, data / "example-selection.txt", data, args.tier), flush=True)
        return 0
    tokens, example, pending = _prepare(data, args.tier, args.pool_size, baselines=not args.no_baselines)
    # The demo's own settings replace the caller's DELBENCH_* variables, except an admin token given.
    keep = {"DELBENCH_ADMIN_TOKEN"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELBENCH_") or k in keep} | _env(data)
    delbench = [sys.executable, "-m", "delbench"]
    # own sessions: Ctrl-C reaches this process only, which then stops the two in order
    worker = subprocess.Popen(
        [*delbench, "worker", "--name", "demo@localhost"], env=env, start_new_session=True
    )
    api = subprocess.Popen(
        [*delbench, "serve", "--host", args.host, "--port", str(args.port), "--log-level", "warning"],
        env=env,
        start_new_session=True,
    )
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    helpers = _Helpers()

    def register_after_encoder() -> None:
        try:
            _register_after_encoder(data, args.tier, pending, env, helpers)
        except Exception as exc:  # the demo goes on without those rows; say why in one line
            print(
                f"demo: the rows {', '.join(b.method for b in pending)} were not registered: {exc}",
                flush=True,
            )

    features = threading.Thread(target=register_after_encoder, daemon=True)
    try:
        _wait_healthy(url, api)
        _wait_worker(data, worker)
        print(banner(url, tokens, example, data, args.tier), flush=True)
        if pending:
            features.start()
        while not stopping and worker.poll() is None and api.poll() is None:
            time.sleep(0.2)  # supervising loop: wakes for a signal or a child's exit
    finally:
        helpers.stop_all()
        if features.is_alive():
            features.join(timeout=30)
        _stop(api, signal.SIGTERM)
        # warm shutdown: a running stage stops at its next step and is handed back, to resume from its
        # checkpoint at the next start (a cold one would have Celery's solo pool try to kill the task)
        _stop(worker, signal.SIGTERM, timeout=60)
    if not stopping:
        print(
            f"delbench demo: error: a process exited unexpectedly (worker {worker.returncode}, api {api.returncode})",
            file=sys.stderr,
        )
        return 1
    print("demo: stopped", flush=True)
    return 0
