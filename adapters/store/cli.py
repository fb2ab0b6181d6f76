"""`tradingd migrate`: apply the Postgres schema (the daemon also does it at start-up)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "migrate", help="apply database migrations (embedded or DATABASE_URL)"
    )
    p.add_argument(
        "--config", help="TOML config file (default: $TRADINGD_CONFIG, else the built-in profile)"
    )
    p.add_argument("--data-dir", help="data directory (default: $TRADINGD_DATA_DIR or ./var)")
    p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:

    from tradingd.adapters.app.cli import config_refused
    from tradingd.adapters.app.settings import load_cli_settings
    from tradingd.adapters.store import namespace_from_env
    from tradingd.adapters.store import postgres as pg
    from tradingd.adapters.store.embedded import EmbeddedPostgres
    from tradingd.adapters.store.errors import StoreError
    from tradingd.adapters.store.lock import DataDirLock
    from tradingd.adapters.transient import POSTGRES_OUTAGES
    from tradingd.engine.errors import TradingdError

    try:
        settings = load_cli_settings(args.config, args.data_dir)
    except TradingdError as exc:
        return config_refused(exc)
    if settings.store.kind == "memory":
        print("tradingd: store is memory: nothing to migrate")
        return 0
    url = settings.store.database_url
    embedded: EmbeddedPostgres | None = None
    was_running = True
    lock: DataDirLock | None = None
    try:
        if not url:
            # The embedded server belongs to the data dir: take its lock so no daemon runs meanwhile.
            lock = DataDirLock(Path(settings.data_dir))
            lock.acquire()
            embedded = EmbeddedPostgres(Path(settings.data_dir))
            was_running = embedded.pid is not None
            url = embedded.start()
        applied = asyncio.run(pg.migrate(url, namespace_from_env()))
    except (StoreError, *POSTGRES_OUTAGES) as exc:
        print(f"tradingd: migrate failed: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None and not was_running:
            embedded.stop()
        if lock is not None:
            lock.release()
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
    return 0
