"""`delbench admin`: organizer bootstrap from a shell (teams, tokens, benchmarks, phases) against the
configured database (DELBENCH_DATABASE_URL), the shell's counterpart of the admin API for the first admin
team. Every action goes to the audit log."""

from __future__ import annotations

import argparse
import getpass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db import has_schema, make_engine, make_session_factory, migrate, session_scope
from app.errors import ApiError
from app.models import Benchmark, Team, Visibility
from app.services import audit
from app.services.phases import create_benchmark, create_phase
from app.services.teams import create_team, create_token
from app.settings import get_settings


def _when(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r}: give a time zone, e.g. 2026-03-01T00:00:00+00:00")
    return parsed


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"delbench {command}", description=__doc__)
    parser.add_argument(
        "--create-database",
        action="store_true",
        help="create and migrate the database if it does not exist yet (otherwise refused: a mistyped "
        "DELBENCH_DATABASE_URL would silently make a second, empty one)",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    team = sub.add_parser("create-team", help="create a team and print its first API token (shown once)")
    team.add_argument("name")
    team.add_argument("--admin", action="store_true", help="an organizers' team")
    token = sub.add_parser("create-token", help="print a new API token for an existing team (shown once)")
    token.add_argument("team")
    phase = sub.add_parser("create-phase", help="create a phase (and its benchmark if new)")
    phase.add_argument("slug")
    phase.add_argument("--benchmark", required=True, help="benchmark slug")
    phase.add_argument("--name", help="display name (default: the slug)")
    phase.add_argument("--pool", required=True, help="pool folder (its manifest is the public listing)")
    phase.add_argument("--tasks", help="downstream tasks folder (default: POOL/tasks)")
    phase.add_argument("--tier", default="synth-tiny", help="tier name or tier JSON path")
    phase.add_argument("--seeds", type=int, default=1)
    phase.add_argument("--quota-per-day", type=int)
    phase.add_argument("--quota-total", type=int)
    phase.add_argument("--opens", type=_when, help="ISO time with zone")
    phase.add_argument("--closes", type=_when, help="ISO time with zone")
    phase.add_argument(
        "--hidden", action="store_true", help="participants see only their own scores until published"
    )
    return parser


def main(command: str, argv: list[str]) -> int:
    args = _parser(command).parse_args(argv)
    try:
        return _run(args)
    except (ValueError, IntegrityError, ApiError) as exc:  # a bad pool, tasks or tier; a taken name
        reason = "already exists" if isinstance(exc, IntegrityError) else str(exc)
        raise SystemExit(f"{args.action}: {reason}") from None


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not args.create_database and not has_schema(settings.database_url):
        raise SystemExit(
            f"no DELBench database at {settings.database_url}. Point DELBENCH_DATABASE_URL at "
            "the server's database (the demo's is DATA_DIR/delbench.sqlite, default data/demo/delbench.sqlite; "
            "its admin token is in `delbench demo --info`), or pass --create-database to create this one."
        )
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    actor = f"cli:{getpass.getuser()}"
    with session_scope(make_session_factory(engine)) as session:
        if args.action == "create-team":
            team = create_team(session=session, name=args.name, is_admin=args.admin)
            _, token = create_token(session=session, team=team, label="created by delbench admin")
            audit.record(
                session=session,
                actor=actor,
                action="create_team",
                target=f"team:{team.name}",
                detail={"admin": args.admin},
            )
            print(f"team {team.name!r} created (id {team.id}); API token (shown once):\n{token}")
        elif args.action == "create-token":
            team = session.scalar(select(Team).where(Team.name == args.team))
            if team is None:
                raise SystemExit(f"no team {args.team!r}")
            _, token = create_token(session=session, team=team, label="created by delbench admin")
            audit.record(session=session, actor=actor, action="create_token", target=f"team:{team.name}")
            print(token)
        else:
            benchmark = session.scalar(select(Benchmark).where(Benchmark.slug == args.benchmark))
            if benchmark is None:
                benchmark = create_benchmark(session=session, slug=args.benchmark, name=args.benchmark)
            phase = create_phase(
                session=session,
                benchmark=benchmark,
                slug=args.slug,
                name=args.name or args.slug,
                pool_dir=args.pool,
                tasks_dir=args.tasks,
                tier=args.tier,
                seeds=args.seeds,
                quota_per_day=args.quota_per_day,
                quota_total=args.quota_total,
                opens_at=args.opens,
                closes_at=args.closes,
                results_visibility=Visibility.hidden if args.hidden else Visibility.public,
            )
            audit.record(
                session=session,
                actor=actor,
                action="create_phase",
                target=f"phase:{phase.slug}",
                detail={"tier": phase.tier},
            )
            print(
                f"phase {phase.slug!r} created in benchmark {benchmark.slug!r} (pool {phase.pool_dir}, tier {phase.tier})"
            )
    engine.dispose()
    return 0
