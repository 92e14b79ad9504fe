"""`delbench serve`: migrate the database (`alembic upgrade head`), then serve the API with uvicorn."""

from __future__ import annotations

import argparse

from app.settings import get_settings


def main(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"delbench {command}", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-migrate", action="store_true", help="skip `alembic upgrade head` at start-up")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    import uvicorn

    from app.db import migrate
    from app.logs import setup_logging
    from app.main import create_app

    setup_logging(args.log_level)
    settings = get_settings()
    if not args.no_migrate:
        migrate(settings.database_url)
    # log_config=None: uvicorn's own loggers go through the root handler, in the one format
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level=args.log_level, log_config=None
    )
    return 0
