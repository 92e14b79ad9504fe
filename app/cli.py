"""`delbench serve`: migrate the database (`alembic upgrade head`), then serve the API with uvicorn."""

from __future__ import annotations

import argparse
import logging

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
    from app.main import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    if not args.no_migrate:
        migrate(settings.database_url)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0
