#!/usr/bin/env python3
"""Print tradingd's WebSocket stream as JSON lines.

    python scripts/ws_client.py --key "$TRADINGD_KEY" positions trades
    python scripts/ws_client.py --url ws://127.0.0.1:8080/v1/ws --agent demo prices alerts

Channels: prices, positions, trades, signals, agents, alerts (default: all). The key (scope
`read`) comes from --key or $TRADINGD_KEY. A jump in `seq` means messages were lost: this client
warns on stderr. Exits 0 when the server closes normally, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import aiohttp

# The server's channels (adapters/http/ws_wire.py Channel); this script runs without the package.
CHANNELS = ("prices", "positions", "trades", "signals", "agents", "alerts", "tokens", "sources")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="print tradingd's WebSocket stream as JSON lines")
    parser.add_argument(
        "channels",
        nargs="*",
        metavar="CHANNEL",
        help=f"channels to subscribe to ({', '.join(CHANNELS)}; default all)",
    )
    parser.add_argument(
        "--url", default=os.environ.get("TRADINGD_WS_URL", "ws://127.0.0.1:8080/v1/ws")
    )
    parser.add_argument(
        "--key", default=os.environ.get("TRADINGD_KEY"), help="API key (or $TRADINGD_KEY)"
    )
    parser.add_argument(
        "--agent", action="append", dest="agents", help="only this agent id (repeatable)"
    )
    parser.add_argument(
        "--token", action="append", dest="tokens", help="only this token mint (repeatable)"
    )
    parser.add_argument(
        "--count", type=int, default=0, help="exit after this many messages (0: run on)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.channels) - set(CHANNELS))
    if unknown:
        parser.error(f"unknown channel(s) {', '.join(unknown)}; choose from {', '.join(CHANNELS)}")
    return args


async def stream(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.key}"}
    subscribe = {
        "op": "subscribe",
        "channels": args.channels or list(CHANNELS),
        "agents": args.agents,
        "tokens": args.tokens,
    }
    last_seq = 0
    printed = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(args.url, headers=headers) as ws,
    ):
        await ws.send_json(subscribe)
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            doc = json.loads(msg.data)
            if doc.get("seq") != last_seq + 1:
                print(f"ws_client: seq jumped from {last_seq} to {doc.get('seq')}", file=sys.stderr)
            last_seq = doc.get("seq", last_seq)
            print(msg.data, flush=True)
            printed += 1
            if args.count and printed >= args.count:
                return 0
        code = ws.close_code
    if code not in (None, 1000, 1001):
        print(f"ws_client: closed by the server with code {code}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.key:
        print("ws_client: an API key is needed (--key or $TRADINGD_KEY)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(stream(args))
    except aiohttp.WSServerHandshakeError as exc:
        print(f"ws_client: refused: HTTP {exc.status}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(f"ws_client: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
