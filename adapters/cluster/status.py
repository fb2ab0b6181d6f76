"""`tradingd cluster status`: what the processes of a cluster show in Redis (docs/cluster.md).

For each shard's store namespace (the base namespace itself for a single process): who holds the
lease (`<fencing token>:<instance>`), how long it has left, the fencing counter, the control URL
the shard registered, the write-through stream's length and the Postgres write-behind's backlog
(the stream holds what Postgres has not committed yet: the writer trims what it did; its
consumer group's pending entries, and lag on Redis 7). With shards, each shard's consumer group on the
intake streams: entries not yet read (lag) and read but not yet acknowledged (pending).

Read-only, one Redis connection whose every call times out (`--timeout`, default 2 s). For
monitoring, the exit code: 0 when every shard that ever took a lease has a holder now (or no
lease was ever used: a plain single process), 1 when one has none (nothing trades for it), 2
when the config is refused or Redis cannot be read."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from tradingd.adapters.cluster.intake_stream import consumer_groups

PG_GROUP = "pg-writer"  # adapters/store/writer.py WriteBehind.GROUP


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster", help="a cluster's state in Redis: leases, shards, intake lag (docs/cluster.md)"
    )
    sub = p.add_subparsers(dest="cluster_command", required=True)
    status = sub.add_parser(
        "status",
        help="who holds each shard's lease, the fencing tokens, the write-behind backlog and "
        "each shard's lag on the intake streams; exit 1 when a shard has no active process",
    )
    status.add_argument(
        "--config", help="TOML config file (default: $TRADINGD_CONFIG, else the built-in profile)"
    )
    status.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    status.add_argument(
        "--shards",
        type=int,
        help="the shard count (default: [cluster] shards of the config, else as many as "
        "registered their control URL in Redis)",
    )
    status.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per Redis call (default 2)"
    )
    status.set_defaults(func=_status)
    from tradingd.adapters.cluster import reshard_cli

    reshard_cli.register(sub)


def _status(args: argparse.Namespace) -> int:
    import os

    from tradingd.adapters.app.cli import config_refused
    from tradingd.adapters.app.settings import load_settings
    from tradingd.adapters.store import namespace_from_env
    from tradingd.adapters.transient import REDIS_FAILURES
    from tradingd.engine.errors import TradingdError

    # Only Redis is read: the config is loaded without the store's environment (a missing
    # DATABASE_URL is no reason to refuse), and REDIS_URL, else [store] redis_url, names it.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    try:
        settings = load_settings(args.config, env)
    except TradingdError as exc:
        return config_refused(exc)
    url = os.environ.get("REDIS_URL") or settings.store.redis_url
    if not url:
        print(
            "tradingd: cluster status reads the cluster's Redis: set REDIS_URL or [store] "
            "redis_url (a cluster runs on the external store)",
            file=sys.stderr,
        )
        return 2
    shards = args.shards or (settings.cluster.shards if settings.cluster.shards > 1 else None)
    if shards is not None and not 1 <= shards <= 64:
        print(f"tradingd: --shards {shards}: 1..64", file=sys.stderr)
        return 2
    try:
        doc = asyncio.run(read_status(url, namespace_from_env(), shards, args.timeout))
    except REDIS_FAILURES as exc:
        print(f"tradingd: cannot read redis: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2) if args.json else table(doc))
    return 0 if all(s["lease"]["holder"] or not s["fencing_counter"] for s in doc["shards"]) else 1


async def read_status(
    url: str, base: str, shards: int | None, timeout: float = 2.0
) -> dict[str, Any]:
    """The status document for `shards` shards (None: as many as registered their control URL
    in `<base>:shards`, else one): `{"namespace", "shards_from", "shards": [{"shard",
    "namespace", "lease": {"holder",
    "expires_in_ms"}, "fencing_counter", "url", "events", "pg_backlog": {"lag", "pending"}}],
    "intake": {stream: {"length", "groups": {group: {"lag", "pending", "last_delivered"}}}}}`
    (`intake` only with shards)."""
    from tradingd.adapters.cluster.intake_stream import IntakeKeys
    from tradingd.adapters.cluster.shards import shard_namespace
    from tradingd.adapters.store.redis import client
    from tradingd.adapters.store.stream_codec import Keys

    r = client(url, timeout)
    intake = IntakeKeys(base)
    try:
        urls = await r.hgetall(intake.shards)
        source = "given"
        if shards is None:
            registered = [int(k) for k in urls if k.isdigit()]
            shards = max(registered) + 1 if registered else 1
            source = "registered in redis" if registered else "none registered: one process"
        out: dict[str, Any] = {"namespace": base, "shards_from": source, "shards": []}
        for i in range(shards):
            keys = Keys(shard_namespace(base, i, shards))
            holder = await r.get(keys.lease)
            ttl = await r.pttl(keys.lease)
            groups = await consumer_groups(r, keys.stream)
            pg = groups.get(PG_GROUP, {})
            out["shards"].append(
                {
                    "shard": i,
                    "namespace": keys.ns,
                    "lease": {
                        "holder": holder.decode() if holder else None,
                        "expires_in_ms": ttl if holder and ttl >= 0 else None,
                    },
                    "fencing_counter": int(await r.get(keys.fence) or 0),
                    "url": (urls.get(str(i).encode()) or b"").decode() or None,
                    "events": await r.xlen(keys.stream),
                    "pg_backlog": {"lag": pg.get("lag"), "pending": pg.get("pending")},
                }
            )
        if shards > 1:
            out["intake"] = {}
            for stream in ("signals", "ticks"):
                key = intake.stream(stream)
                last = int(await r.get(intake.stream_seq(stream)) or 0)  # S of the last entry
                out["intake"][stream] = {
                    "length": await r.xlen(key),
                    "groups": await consumer_groups(r, key, last),
                }
        return out
    finally:
        await r.aclose()


def table(doc: dict[str, Any]) -> str:
    lines = [f"namespace {doc['namespace']}, {len(doc['shards'])} shard(s) ({doc['shards_from']})"]
    lines.append(
        f"{'shard':<6}{'lease holder':<36}{'expires':>9}{'fence':>7}{'events':>8}{'pg lag':>8}  url"
    )
    for s in doc["shards"]:
        lease = s["lease"]
        expires = f"{lease['expires_in_ms']}ms" if lease["expires_in_ms"] is not None else "-"
        holder = lease["holder"] or ("NONE" if s["fencing_counter"] else "- (no lease in use)")
        lag = s["pg_backlog"]["lag"]
        lines.append(
            f"{s['shard']:<6}{holder[:35]:<36}{expires:>9}{s['fencing_counter']:>7}"
            f"{s['events']:>8}{'-' if lag is None else lag:>8}  {s['url'] or '-'}"
        )
    for stream, info in doc.get("intake", {}).items():
        lines.append(f"intake {stream}: {info['length']} entries")
        for group, g in sorted(info["groups"].items()):
            lines.append(
                f"  {group:<6} lag {g['lag'] if g['lag'] is not None else '-':>6}  "
                f"pending {g['pending']:>6}  last {g['last_delivered']}"
            )
    return "\n".join(lines)
