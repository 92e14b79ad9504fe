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
import time
import urllib.request
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


# Reference rows registered when the demo phase is created, so the board is not empty: the two ends of
# the R axis. Each costs one evaluation (under 3 minutes at synth-tiny on 2 CPU cores), queued before any
# participant's submission; `--no-baselines` skips them.
DEMO_BASELINES = (("random 5%", 0.05), ("full pool", 1.0))


def _register_baselines(session, phase, settings) -> list[int]:
    """Submit the demo's baseline selections through the same service the admin API uses (audited)."""
    import random

    from app.services import audit
    from app.services.submissions import SubmissionMeta, baselines_team, create_submission
    from evaluator.store import open_pool

    ids = open_pool(phase.pool_dir).ids
    team = baselines_team(session=session)
    created = []
    for method, fraction in DEMO_BASELINES:
        chosen = ids if fraction >= 1 else random.Random(0).sample(ids, max(1, round(fraction * len(ids))))
        submission = create_submission(
            session=session, team=team, phase=phase, data="\n".join(chosen).encode(), is_baseline=True,
            meta=SubmissionMeta(
                method=method, description=f"{fraction:.0%} of the pool" + (" at random" if fraction < 1 else ""),
                allow_selection_download=True,
            ),
            uploads_dir=settings.uploads_dir, max_bytes=settings.upload_max_bytes,
        )  # fmt: skip
        audit.record(
            session=session, actor="demo", action="register_baseline", target=f"submission:{submission.id}",
            reason="demo start-up: reference rows", detail={"method": method, "n": submission.n},
        )  # fmt: skip
        created.append(submission.id)
    return created


def _prepare(data: Path, tier_arg: str, pool_size: int, baselines: bool = True) -> tuple[str, Path]:
    """Pool, database, demo phase and team; returns a new participant token and an example selection."""
    from app.db import make_engine, make_session_factory, migrate, session_scope
    from app.models import Benchmark, Phase, Team
    from app.services.phases import create_benchmark, create_phase
    from app.services.teams import create_team, create_token
    from app.settings import Settings
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
    settings = Settings(**{k.removeprefix("DELBENCH_").lower(): v for k, v in _env(data).items()})
    (data / "broker" / "results").mkdir(parents=True, exist_ok=True)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    tier_ref = str(Path(tier_arg).resolve()) if Path(tier_arg).suffix else tier_arg
    with session_scope(make_session_factory(engine)) as session:
        benchmark = session.scalar(select(Benchmark).where(Benchmark.slug == "delbench-demo"))
        if benchmark is None:
            benchmark = create_benchmark(
                session=session, slug="delbench-demo", name="DELBench demo (synthetic pool)"
            )
        phase = session.scalar(select(Phase).where(Phase.slug == DEMO_PHASE))
        new_baselines: list[int] = []
        if phase is None:
            phase = create_phase(
                session=session,
                benchmark=benchmark,
                slug=DEMO_PHASE,
                name="Demo",
                pool_dir=pool_dir,
                tier=tier_ref,
            )
            if baselines:
                new_baselines = _register_baselines(session, phase, settings)
        else:
            phase.tier, phase.pool_dir = tier_ref, str(pool_dir.resolve())  # a re-run may name another tier
        team = session.scalar(select(Team).where(Team.name == "demo-team")) or create_team(
            session=session, name="demo-team"
        )
        _, token = create_token(session=session, team=team, label="delbench demo")
    if new_baselines:  # committed above; now queued (the worker started next consumes them first)
        from app.models import Submission
        from app.services.dispatch import dispatch_next
        from worker.celery_app import create_celery

        celery = create_celery(settings)
        with session_scope(make_session_factory(engine)) as session:
            for sid in new_baselines:
                dispatch_next(session=session, celery=celery, submission=session.get(Submission, sid))
        print(f"demo: {len(new_baselines)} baseline rows queued ({', '.join(m for m, _ in DEMO_BASELINES)})")
    engine.dispose()
    example = data / "example-selection.txt"
    ids = open_pool(pool_dir).ids
    example.write_text("\n".join(ids[::10]) + "\n")  # every 10th frame: R = 0.1
    return token, example


def _wait_healthy(url: str, api: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise SystemExit(f"demo: the API exited with status {api.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # poll interval
    raise SystemExit(f"demo: the API did not answer on {url} within {timeout:.0f} s")


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
        "--no-baselines", action="store_true", help="do not queue the baseline rows when the phase is created"
    )
    args = parser.parse_args(argv)

    data = args.data_dir.resolve()
    token, example = _prepare(data, args.tier, args.pool_size, baselines=not args.no_baselines)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELBENCH_")} | _env(data)
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
    url = f"http://{args.host}:{args.port}"
    try:
        _wait_healthy(url, api)
        example_arg = os.path.relpath(example) if not os.path.relpath(example).startswith("..") else example
        print(
            f"""
DELBench demo is running: API {url} (docs {url}/docs), one worker, phase '{DEMO_PHASE}' (tier {args.tier}).
Leaderboard: {url}/phases/{DEMO_PHASE}

  participant token: {token}

Submit a selection (every 10th pool frame) and follow it:

  export TOKEN={token}
  curl -sS -H "Authorization: Bearer $TOKEN" -F file=@{example_arg} -F method=every-10th \\
       {url}/api/v1/phases/{DEMO_PHASE}/submissions
  curl -sS -H "Authorization: Bearer $TOKEN" {url}/api/v1/submissions/ID
  curl -sS {url}/api/v1/phases/{DEMO_PHASE}/leaderboard

The pool's public listing (IDs to select from): {data / "pool" / "manifest.jsonl"}
Ctrl-C stops the demo.
""",
            flush=True,
        )
        while not stopping and worker.poll() is None and api.poll() is None:
            time.sleep(0.2)  # supervising loop: wakes for a signal or a child's exit
    finally:
        _stop(api, signal.SIGTERM)
        _stop(
            worker, signal.SIGQUIT
        )  # cold shutdown: an unfinished task is re-enqueued by the next run's reconciler
    if not stopping:
        print(
            f"demo: a process exited unexpectedly (worker {worker.returncode}, api {api.returncode})",
            file=sys.stderr,
        )
        return 1
    print("demo: stopped", flush=True)
    return 0
