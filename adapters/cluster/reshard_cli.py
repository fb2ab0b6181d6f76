"""`tradingd cluster reshard --shards M [--dry-run]`: the command around Reshard (reshard.py);
exit 0 done, 1 refused (nothing changed), 2 a store out of reach, a bad argument or config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from tradingd.adapters.cluster.reshard import Reshard, ReshardRefused, StoreUnreachable


def register(sub: Any) -> None:
    p = sub.add_parser(
        "reshard",
        help="change a STOPPED cluster's shard count: move every agent whose owner changes "
        "(its rows in Postgres, its live view in Redis) to its new shard",
    )
    p.add_argument("--shards", type=int, required=True, help="the new shard count (2..64)")
    p.add_argument(
        "--config", help="TOML config file (default: $TRADINGD_CONFIG, else the built-in profile)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="take the leases, check, print the moves, change nothing (default: off)",
    )
    p.set_defaults(func=_reshard)


def _reshard(args: argparse.Namespace) -> int:
    from tradingd.adapters.app.cli import config_refused
    from tradingd.adapters.app.settings import load_settings
    from tradingd.adapters.store import namespace_from_env
    from tradingd.adapters.transient import REDIS_FAILURES
    from tradingd.engine.errors import TradingdError

    try:
        settings = load_settings(args.config, dict(os.environ))
    except TradingdError as exc:
        return config_refused(exc)
    redis_url, database_url = settings.store.redis_url, settings.store.database_url
    if not redis_url or not database_url:
        print(
            "tradingd: cluster reshard works on the cluster's store: set REDIS_URL and "
            "DATABASE_URL (or [store] redis_url, database_url)",
            file=sys.stderr,
        )
        return 2
    from tradingd.adapters.cluster.shards import MAX_SHARDS
    from tradingd.adapters.store.postgres import check_schema

    if not 2 <= args.shards <= MAX_SHARDS:
        print(f"tradingd: --shards {args.shards}: 2..{MAX_SHARDS}", file=sys.stderr)
        return 2

    try:
        namespace = check_schema(namespace_from_env())
    except ValueError as exc:
        print(f"tradingd: TRADINGD_STORE_NAMESPACE: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        job = Reshard(redis_url, database_url, namespace, args.shards)
        report = asyncio.run(job.run(dry_run=args.dry_run))
    except ReshardRefused as exc:
        print(f"tradingd: reshard refused: {exc}", file=sys.stderr)
        return 1
    except StoreUnreachable as exc:
        print(f"tradingd: {exc}", file=sys.stderr)
        return 2
    except REDIS_FAILURES as exc:
        print(f"tradingd: cannot reach redis: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a URL that is not one (the message never holds the URL)
        print(
            f"tradingd: REDIS_URL or DATABASE_URL is not a valid URL ({type(exc).__name__})",
            file=sys.stderr,
        )
        return 2
    print(
        f"reshard {'planned' if args.dry_run else 'done'}: {report.get('shards_from')} -> "
        f"{report['shards_to']} shards, {report.get('agents_moving', 0)} agent(s) moving, "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0
