"""The fake Binance (tests/fakes/binance.py) as a process of its own, for benchmarks: its work
(matching, signing checks, JSON) then runs off the event loop under test.

    python -m tests.fakes.binance_process --port-file PATH

writes {"url", "ws_url", "control_url", "api_key", "secret"} to PATH once listening (all on
127.0.0.1) and serves a control app: POST /control with {"balance": {"USDT": "1000000"},
"price": {"BTC/USDT": "65000"}} sets balances and prices; GET /control/orders answers
{"orders": [[client_order_id, received_at], ...]}: every POST /api/v3/order received, with the
fake's time.monotonic_ns() once the request was read (CLOCK_MONOTONIC is system-wide on Linux,
so a caller compares it with its own stamps). Runs until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from aiohttp import web

from tests.fakes.binance import FakeBinance


async def _serve(port_file: Path) -> None:
    fake = FakeBinance()
    url = await fake.start(port=0)

    async def control(request: web.Request) -> web.Response:
        doc = await request.json()
        for asset, free in (doc.get("balance") or {}).items():
            fake.set_balance(asset, free)
        for symbol, price in (doc.get("price") or {}).items():
            fake.set_price(symbol, price)
        return web.json_response({"ok": True})

    async def orders(_request: web.Request) -> web.Response:
        posts = fake.order_posts()
        return web.json_response(
            {
                "orders": [
                    [p.params.get("newClientOrderId"), int(p.at * 1_000_000_000)] for p in posts
                ]
            }
        )

    app = web.Application()
    app.router.add_post("/control", control)
    app.router.add_get("/control/orders", orders)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    control_port = runner.addresses[0][1]
    tmp = port_file.with_suffix(".tmp")  # renamed into place: a reader never sees half of it
    tmp.write_text(
        json.dumps(
            {
                "url": url,
                "ws_url": fake.ws_url,
                "control_url": f"http://127.0.0.1:{control_port}",
                "api_key": fake.api_key,
                "secret": fake.secret,
            }
        )
    )
    os.replace(tmp, port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_serve(args.port_file))


if __name__ == "__main__":
    main()
