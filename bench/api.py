"""Server hot paths against a real uvicorn server on 127.0.0.1, side by side with a bare FastAPI endpoint.

    .venv/bin/python bench/api.py            # uploads of 88,282 and 1,000,000 IDs; a 1,000-row leaderboard
    .venv/bin/python bench/api.py --quick    # fewer repeats

Set-up (in a temporary folder, nothing else touched): pools of 88,282 and 1,000,000 frames as their public
listing only (pool.json + manifest.jsonl, no image arrays: upload validation reads nothing else), a SQLite
database migrated and seeded through the service functions (a benchmark, phases, a team and its token), and a
1,000-row board: succeeded submissions with their eight per-dataset results, the rows the aggregate stage
writes. Two server processes, started the same way (`uvicorn.run(app, host, port, log_level="warning")`):
`delbench serve` (the real app, filesystem broker) and a bare FastAPI app whose one `async` route returns the
board's JSON bytes, precomputed: the ceiling of what FastAPI and uvicorn serve on this machine.

Measured:
- upload: POST of the whole pool as a selection file (one ID a line), end to end: the multipart upload,
  validation (`evaluator.selection.load_selection`), storing the file, the submission row and its stages,
  queueing. Repeats alternate between the two pool sizes. The same validation in-process is timed alongside.
- leaderboard: GET /api/v1/phases/board/leaderboard (public) against GET /board.json on the bare app, rounds
  alternating between the two, each a fixed number of requests from `--clients` threads with keep-alive
  connections (stdlib http.client, the lightest client); requests/s and p50/p99 latency.
Client and servers share this machine's cores: the figures are for one machine, and the ratios are the point.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_UPLOAD_1M_S = 1.0  # issue 8: 1 M IDs validated in under 1 s
TARGET_BOARD_RATIO = 0.5  # issue 8: leaderboard JSON at >= 50 % of the bare endpoint's requests/s
BOARD_ROWS = 1000


# ------------------------------------------------------------------------------------------ data


def write_pool(folder: Path, n: int) -> list[str]:
    """The public listing of an n-frame pool (no arrays) and eight task folders; returns the IDs."""
    from evaluator.store import POOL_FORMAT, TASK_FORMAT, TASK_NAMES

    folder.mkdir(parents=True)
    ids = [f"bench-source/v{i // 24:06d}/f{i % 24:03d}" for i in range(n)]
    with open(folder / "manifest.jsonl", "w", encoding="utf-8") as f:
        for i, sample_id in enumerate(ids):
            f.write(
                f'{{"id":"{sample_id}","source":"bench-source","video":"{sample_id[:20]}",'
                f'"frame":{i % 24},"sha256":"{i:064x}"}}\n'
            )
    (folder / "pool.json").write_text(json.dumps({"format": POOL_FORMAT, "size": n, "resolutions": []}))
    for name in TASK_NAMES:
        (folder / "tasks" / name).mkdir(parents=True)
        meta = {
            "format": TASK_FORMAT,
            "name": name,
            "kind": "polyp",
            "resolutions": [],
            "n_train": 0,
            "n_test": 0,
        }
        (folder / "tasks" / name / "task.json").write_text(json.dumps(meta))
    return ids


def seed_database(url: str, pools: dict[str, Path]) -> str:
    """Migrate, create the benchmark, phases and a team; fill phase `board` with BOARD_ROWS rows. Returns a token."""
    import random

    from app.db import make_engine, make_session_factory, migrate, session_scope
    from app.models import Result, Submission, SubmissionStatus, Visibility
    from app.services.phases import create_benchmark, create_phase
    from app.services.teams import create_team, create_token
    from evaluator.store import TASK_NAMES

    migrate(url)
    engine = make_engine(url)
    rng = random.Random(0)
    with session_scope(make_session_factory(engine)) as session:
        benchmark = create_benchmark(session=session, slug="bench", name="DELBench API benchmark")
        phases = {}
        for slug, pool in pools.items():
            phases[slug] = create_phase(
                session=session, benchmark=benchmark, slug=slug, name=slug, pool_dir=pool, tier="synth-tiny",
                results_visibility=Visibility.public,
            )  # fmt: skip
        phases["board"].published = True
        team = create_team(session=session, name="bench-team")
        _, token = create_token(session=session, team=team)
        teams = [create_team(session=session, name=f"team-{k:03d}") for k in range(50)]
        session.flush()
        for k in range(BOARD_ROWS):
            level = rng.uniform(0.3, 0.9)
            ratio = rng.choice([0.05, 0.1, 0.2, 0.33, 0.5, 1.0])
            sub = Submission(
                team_id=teams[k % len(teams)].id, phase_id=phases["board"].id, selection_data=b"",
                file_sha256="0" * 64, file_bytes=0, selection_hash=f"{k:064x}", n=int(88_282 * ratio),
                pool_size=88_282, retained_fraction=ratio, seeds=[0], method=f"method {k}",
                status=SubmissionStatus.succeeded, progress=1.0, mean_normdel=0.5 + level / 4, mean_miou=level,
            )  # fmt: skip
            sub.results = [
                Result(seed=0, dataset=name, miou=level + rng.uniform(-0.05, 0.05), normdel=0.5 + level / 4)
                for name in TASK_NAMES
            ]
            session.add(sub)
    engine.dispose()
    return token


# --------------------------------------------------------------------------------------- servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not answer in 120 s")


def serve_bare(port: int, payload: Path) -> None:
    """The bare app: FastAPI, one async route returning precomputed bytes (run in its own process)."""
    import uvicorn
    from fastapi import FastAPI, Response

    body = payload.read_bytes()
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/board.json")
    async def board() -> Response:
        return Response(content=body, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------------------------------- clients


def multipart(data: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="ids.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(port: int, slug: str, token: str, body: bytes, content_type: str) -> tuple[float, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    t0 = time.perf_counter()
    conn.request("POST", f"/api/v1/phases/{slug}/submissions", body=body, headers=headers)
    response = conn.getresponse()
    doc = json.loads(response.read())
    seconds = time.perf_counter() - t0
    conn.close()
    if response.status != 202:
        raise RuntimeError(f"upload to {slug}: {response.status} {doc}")
    return seconds, doc


def hammer(port: int, path: str, requests: int, clients: int) -> tuple[float, list[float], int]:
    """`requests` GETs of `path` from `clients` threads; returns (wall seconds, latencies, body bytes)."""
    latencies: list[float] = []
    sizes: list[int] = []
    lock = threading.Lock()
    per_client = [requests // clients + (k < requests % clients) for k in range(clients)]

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - t0)
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")
        conn.close()
        with lock:
            latencies.extend(mine)
            sizes.append(len(body))

    threads = [threading.Thread(target=client, args=(c,)) for c in per_client]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if len(latencies) != requests:
        raise RuntimeError(f"GET {path}: {requests - len(latencies)} requests failed")
    return wall, latencies, sizes[0]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


# ------------------------------------------------------------------------------------------- main


def measure_uploads(args, port: int, token: str, ids: dict[str, list[str]], pools: dict[str, Path]) -> float:
    """Prints the upload figures; returns the median end-to-end seconds for 1,000,000 IDs."""
    from evaluator.selection import load_selection
    from evaluator.store import open_pool

    print(
        f"\n== upload validation (POST of the whole pool as one ID a line; {args.repeats} each, alternating)"
    )
    files = {slug: multipart(("\n".join(ids[slug]) + "\n").encode(), {"method": "bench"}) for slug in ids}
    for slug in ids:  # warm-up: the API parses each pool's manifest once (in the background at start-up)
        upload(port, slug, token, *files[slug])
    times: dict[str, list[float]] = {slug: [] for slug in ids}
    for _ in range(args.repeats):
        for slug in ids:
            seconds, doc = upload(port, slug, token, *files[slug])
            assert doc["n"] == len(ids[slug])
            times[slug].append(seconds)
    for slug in ids:
        data = ("\n".join(ids[slug]) + "\n").encode()
        index_of = open_pool(pools[slug]).index_of
        local = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            load_selection(data, index_of)
            local.append(time.perf_counter() - t0)
        print(f"  {len(ids[slug]):>9,} IDs ({len(files[slug][0]) / 1e6:.1f} MB): request "
              f"{statistics.median(times[slug]):.2f} s median (min {min(times[slug]):.2f}); of which validation "
              f"in-process {statistics.median(local):.2f} s")  # fmt: skip
    return statistics.median(times["v1m"])


def measure_board(args, api_port: int, bare_port: int, board_path: str, rows: int, size: int) -> float:
    """Prints the leaderboard figures; returns leaderboard / bare requests per second."""
    print(f"\n== leaderboard JSON ({rows:,} rows, {size / 1e3:.0f} kB): {args.rounds} rounds x {args.requests} "
          f"requests each, {args.clients} clients, alternating")  # fmt: skip
    hammer(api_port, board_path, 20, args.clients)  # warm-up both
    hammer(bare_port, "/board.json", 20, args.clients)
    results: dict[str, list] = {"leaderboard": [], "bare": []}
    for _ in range(args.rounds):
        for name, port, path in (("leaderboard", api_port, board_path), ("bare", bare_port, "/board.json")):
            wall, latencies, _ = hammer(port, path, args.requests, args.clients)
            results[name].append((args.requests / wall, latencies))
    rps = {}
    for name, rounds in results.items():
        rps[name] = statistics.median(r[0] for r in rounds)
        lat = [x for r in rounds for x in r[1]]
        print(f"  {name:<12} {rps[name]:8.1f} requests/s (rounds: {', '.join(f'{r[0]:.0f}' for r in rounds)}); "
              f"latency p50 {statistics.median(lat) * 1e3:.1f} ms, p99 {p99(lat) * 1e3:.1f} ms")  # fmt: skip
    return rps["leaderboard"] / rps["bare"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and requests")
    parser.add_argument("--repeats", type=int, default=3, help="uploads per pool size (default 3)")
    parser.add_argument(
        "--requests", type=int, default=300, help="leaderboard requests per round (default 300)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per endpoint, alternating (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client connections (default 4)")
    parser.add_argument("--skip-uploads", action="store_true", help="measure the leaderboard only")
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "PAYLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        serve_bare(int(args.bare[0]), Path(args.bare[1]))
        return 0
    if args.quick:
        args.repeats, args.requests, args.rounds = 1, 100, 2

    started = time.perf_counter()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="delbench-api-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ids = {"v88k": write_pool(tmp / "pool-88k", 88_282), "v1m": write_pool(tmp / "pool-1m", 1_000_000)}
        pools = {"v88k": tmp / "pool-88k", "v1m": tmp / "pool-1m", "board": tmp / "pool-88k"}
        db_url = f"sqlite:///{tmp / 'db.sqlite'}"
        token = seed_database(db_url, pools)
        print(
            f"set-up: pools of 88,282 and 1,000,000 IDs, {BOARD_ROWS:,}-row board ({time.perf_counter() - t0:.1f} s)"
        )

        env = {k: v for k, v in os.environ.items() if not k.startswith("DELBENCH_")}
        env.update(
            DELBENCH_DATABASE_URL=db_url, DELBENCH_BROKER_URL="filesystem://", DELBENCH_BROKER_DIR=str(tmp / "broker"),
            DELBENCH_RESULT_BACKEND=f"file://{tmp / 'results'}", DELBENCH_DATA_DIR=str(tmp / "data"),
            DELBENCH_RECONCILE_SECONDS="0",
        )  # fmt: skip
        (tmp / "results").mkdir()
        api_port, bare_port = free_port(), free_port()
        serve = [sys.executable, "-m", "delbench", "serve", "--port", str(api_port), "--log-level", "warning"]
        api, bare = start(serve, env, api_port, tmp / "api.log"), None
        try:
            board_path = "/api/v1/phases/board/leaderboard"
            conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
            conn.request("GET", board_path)
            payload = conn.getresponse().read()
            (tmp / "board.json").write_bytes(payload)
            rows = len(json.loads(payload)["rows"])
            bare_cmd = [sys.executable, __file__, "--bare", str(bare_port), str(tmp / "board.json")]
            bare = start(bare_cmd, env, bare_port, tmp / "bare.log")
            upload_1m = (
                float("nan") if args.skip_uploads else measure_uploads(args, api_port, token, ids, pools)
            )
            ratio = measure_board(args, api_port, bare_port, board_path, rows, len(payload))
        except BaseException:
            print(f"api server log (tail):\n{(tmp / 'api.log').read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            for proc in (api, bare):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)

    print("\n== against the targets (issue 8)")
    print(
        f"  upload of 1,000,000 IDs: {upload_1m:.2f} s end to end (target: validated in < {TARGET_UPLOAD_1M_S:.0f} s)"
    )
    print(f"  leaderboard / bare requests/s: {ratio:.2f} (target >= {TARGET_BOARD_RATIO:.2f})")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
