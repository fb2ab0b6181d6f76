"""WebSocket fan-out: 1,000 clients on `prices` while 1,000 ticks/s for 100 tokens are pushed.

The server is one in-process daemon (memory engine, paper venue) serving the real control-port
app on 127.0.0.1 under uvloop; ticks go in through `runtime.push_ticks`, as every feed does. The
clients run in a second process (this script with `--clients`), so the two cores are split
between them. Phases:
- idle: the same tick load with no client, event-loop lag sampled (1 ms timer oversleep);
- fan-out: every client subscribed to prices; messages delivered per second (client side), seq
  gaps, delivery lag (receive time - message ts), event-loop lag;
- stalled: one more client subscribes to everything and stops reading while buy signals
  (100/s) make position, trade and signal messages; it must be closed as a slow consumer
  (1013) while the others' delivery and the loop lag stay as in fan-out.

    .venv/bin/python benchmarks/ws_fanout.py [--json PATH] [--clients N] [--seconds S]

Bounded: each phase has a fixed length or a budget; the whole run takes about a minute."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from typing import Any

import aiohttp
import msgspec
from _stats import add_json_arg, percentiles, write_json
from aiohttp import web
from tradingd.adapters.app.daemon import Daemon
from tradingd.adapters.app.settings import Settings
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.http.auth import KeyStore
from tradingd.adapters.http.server import wire_control_port
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.model import Signal, Tick

TOKENS = 100
TICKS_PER_S = 1000
STEP_S = 0.01  # ticks are pushed in 10 ms batches
LAG_TIMER_S = 0.001
REPORT_S = 0.5
STALL_BUDGET_S = 40.0
SIGNALS_PER_S = 200  # buy signals while the stalled client is measured: messages that queue
CONNECT_BUDGET_S = 60.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- the client process -------------------------------------------------------------------------


class Envelope(msgspec.Struct):
    type: str
    seq: int
    ts: int


async def run_clients(url: str, key: str, n: int) -> None:
    """N subscribers on prices; a JSON report line on stdout every REPORT_S; exits on stdin EOF."""
    decode = msgspec.json.Decoder(Envelope).decode
    stats = {"ready": 0, "msgs": 0, "gaps": 0, "closed": 0}
    lags: list[int] = []
    headers = {"Authorization": f"Bearer {key}"}
    gate = asyncio.Semaphore(50)

    async def client(session: aiohttp.ClientSession) -> None:
        async with gate:
            ws = await session.ws_connect(url, headers=headers, decode_text=False, max_msg_size=0)
            await ws.send_str('{"op":"subscribe","channels":["prices"]}')
        last = 0
        async for msg in ws:
            env = decode(msg.data)
            if env.seq != last + 1:
                stats["gaps"] += 1
            last = env.seq
            if env.type == "prices":
                stats["msgs"] += 1
                if stats["msgs"] % 20 == 0:
                    lags.append(now_ms() - env.ts)
            elif env.type == "snapshot":
                stats["ready"] += 1
        stats["closed"] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(n)]
        stdin_closed = asyncio.create_task(_stdin_eof())
        while not stdin_closed.done():
            await asyncio.sleep(REPORT_S)
            report = {"t": time.time(), **stats, "lags_ms": lags[:]}
            lags.clear()
            sys.stdout.write(json.dumps(report) + "\n")
            sys.stdout.flush()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stdin_eof() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


# -- the server side ----------------------------------------------------------------------------


class LagSampler:
    """Oversleep of a short timer: how long ready callbacks waited for the loop, in microseconds."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(LAG_TIMER_S)
            self.samples.append(max(0.0, (time.perf_counter() - start - LAG_TIMER_S) * 1e6))

    def take(self) -> list[float]:
        samples, self.samples = self.samples, []
        return samples


class Server:
    def __init__(self) -> None:
        settings = Settings()
        self.settings = settings
        self.daemon = Daemon(settings, demo=False)
        self.daemon.keys = KeyStore(None)
        self.key = self.daemon.keys.create("bench", frozenset({"read"}))[1]
        self.tokens = [demo_mint(f"FANOUT{i}") for i in range(TOKENS)]
        self.rng = random.Random(7)
        self.prices = {t: 1.0 for t in self.tokens}
        self.ticks_pushed = 0

    async def start(self) -> str:
        app = wire_control_port(self.daemon)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        port = self.runner.addresses[0][1]
        self.daemon.ready = True
        return f"ws://127.0.0.1:{port}/v1/ws"

    async def push_ticks(self) -> None:
        runtime, tokens, per_step = self.daemon.runtime, self.tokens, int(TICKS_PER_S * STEP_S)
        runtime.push_ticks([Tick(SOL_MINT, 150.0, now_ms(), "bench", decimals=9)])
        i, deadline = 0, time.perf_counter()
        while True:
            ts = now_ms()
            batch = []
            for _ in range(per_step):
                token = tokens[i % len(tokens)]
                i += 1
                self.prices[token] *= 1 + self.rng.gauss(0, 0.002)
                batch.append(Tick(token, self.prices[token], ts, "bench", decimals=6))
            runtime.push_ticks(batch)
            self.ticks_pushed += len(batch)
            deadline += STEP_S
            await asyncio.sleep(max(0.0, deadline - time.perf_counter()))

    async def send_signals(self, per_s: float) -> None:
        engine, runtime = self.daemon.engine, self.daemon.runtime
        config = config_from_builtins(
            {"limits": {"max_open_positions": 100000, "max_positions_per_token": 1000}}
        )
        runtime.apply(
            engine.create_agent, "stall-maker", "paper", config, "SOL", None, "stall-maker"
        )
        runtime.apply(engine.deposit, "stall-maker", "SOL", 10**13)
        for n in range(10**6):
            now = now_ms()
            signal = Signal(
                id=f"bench-{n}",
                token=self.tokens[n % len(self.tokens)],
                type="bench",
                strength=3,
                received_at=now,
                expires_at=now + 30_000,
            )
            runtime.apply(engine.on_signal, signal)
            await asyncio.sleep(1 / per_s)

    async def stop(self) -> None:
        await self.daemon.shutdown()
        await self.runner.cleanup()


async def stalled_client(url: str, key: str) -> socket.socket:
    """A client with a tiny receive window that subscribes to everything and never reads."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    request = (
        f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Authorization: Bearer {key}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    payload = b'{"op":"subscribe","channels":["prices","positions","trades","signals","agents"]}'
    await loop.sock_sendall(
        sock, bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload
    )  # zero mask
    return sock


class Reports:
    """Report lines of the client process, kept with their arrival time."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    async def read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(json.loads(line))

    def last(self) -> dict[str, Any]:
        return self.lines[-1] if self.lines else {"ready": 0, "msgs": 0, "gaps": 0, "closed": 0}

    def lags_between(self, t0: float, t1: float) -> list[float]:
        return [lag for r in self.lines if t0 < r["t"] <= t1 for lag in r["lags_ms"]]


async def window(sampler: LagSampler, reports: Reports, wait: Any) -> dict[str, Any]:
    """Loop lag and client figures while `wait` runs (client figures from its report lines)."""
    sampler.take()
    t0, start = time.time(), reports.last()
    await wait
    t1, end = time.time(), reports.last()
    span = max(end.get("t", t1) - start.get("t", t0), 1e-9)
    return {
        "loop_lag_us": percentiles(sampler.take()),
        "delivered_msgs_per_s": (end["msgs"] - start["msgs"]) / span,
        "seq_gaps": end["gaps"] - start["gaps"],
        "delivery_lag_ms": percentiles(reports.lags_between(t0, t1)),
    }


async def until_dropped(hub: Any, budget_s: float) -> None:
    deadline = time.monotonic() + budget_s
    while hub.slow_consumers == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    server = Server()
    url = await server.start()
    sampler = LagSampler()
    background = [asyncio.create_task(sampler.run()), asyncio.create_task(server.push_ticks())]
    await asyncio.sleep(1.0)
    sampler.take()
    await asyncio.sleep(args.seconds / 2)
    idle = percentiles(sampler.take())
    hub = server.daemon.hub

    clients = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-clients",
        url,
        server.key,
        str(args.clients),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert clients.stdout is not None and clients.stdin is not None
    reports = Reports()
    background.append(asyncio.create_task(reports.read(clients.stdout)))
    connect_deadline = time.monotonic() + CONNECT_BUDGET_S
    while reports.last()["ready"] < args.clients and time.monotonic() < connect_deadline:
        await asyncio.sleep(0.2)
    connected = reports.last()["ready"]

    await asyncio.sleep(REPORT_S * 2)  # the first report line with every client ready
    sent0, t0 = hub.sent, time.monotonic()
    fanout = await window(sampler, reports, asyncio.sleep(args.seconds))
    fanout["server_msgs_sent_per_s"] = (hub.sent - sent0) / (time.monotonic() - t0)

    background.append(asyncio.create_task(server.send_signals(SIGNALS_PER_S)))
    await asyncio.sleep(REPORT_S * 2)
    control = await window(sampler, reports, asyncio.sleep(args.seconds / 2))
    stalled = await stalled_client(url, server.key)
    stall_started = time.monotonic()
    stall = await window(sampler, reports, until_dropped(hub, STALL_BUDGET_S))
    dropped_after = time.monotonic() - stall_started if hub.slow_consumers else None
    stalled.close()

    clients.stdin.close()
    try:
        await asyncio.wait_for(clients.wait(), 10)
    except TimeoutError:
        clients.kill()  # only the client process this run started
        await clients.wait()
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await server.stop()
    return {
        "clients": connected,
        "tokens": TOKENS,
        "ticks_per_s": TICKS_PER_S,
        "price_interval_ms": server.settings.ws.price_interval_ms,
        "delivered_msgs_per_s": round(fanout["delivered_msgs_per_s"], 1),
        "server_msgs_sent_per_s": round(fanout["server_msgs_sent_per_s"], 1),
        "loop_lag_us_p99_idle": round(idle["p99"], 1),
        "loop_lag_us_p99_fanout": round(fanout["loop_lag_us"]["p99"], 1),
        "loop_lag_us_p99_signals": round(control["loop_lag_us"]["p99"], 1),
        "loop_lag_us_p99_stalled": round(stall["loop_lag_us"]["p99"], 1),
        "delivery_lag_ms_p99_fanout": fanout["delivery_lag_ms"]["p99"],
        "delivery_lag_ms_p99_signals": control["delivery_lag_ms"]["p99"],
        "delivery_lag_ms_p99_stalled": stall["delivery_lag_ms"]["p99"],
        "delivered_msgs_per_s_stalled": round(stall["delivered_msgs_per_s"], 1),
        "seq_gaps": fanout["seq_gaps"] + control["seq_gaps"] + stall["seq_gaps"],
        "stalled_client_dropped": dropped_after is not None,
        "stalled_dropped_after_s": None if dropped_after is None else round(dropped_after, 2),
        "loop_lag_us": {
            "idle": idle,
            "fanout": fanout["loop_lag_us"],
            "signals": control["loop_lag_us"],
            "stalled": stall["loop_lag_us"],
        },
    }


def print_figures(r: dict[str, Any]) -> None:
    print(
        f"ws fan-out: {r['clients']} clients on prices, {r['ticks_per_s']} ticks/s over "
        f"{r['tokens']} tokens, price_interval_ms={r['price_interval_ms']}"
    )
    print(
        f"  delivered         {r['delivered_msgs_per_s']:.0f} msgs/s to clients (server wrote "
        f"{r['server_msgs_sent_per_s']:.0f}/s); seq gaps: {r['seq_gaps']}"
    )
    print("                    idle     fan-out  +signals  +stalled client")
    print(
        f"  loop lag p99 us   {r['loop_lag_us_p99_idle']:<8.0f} {r['loop_lag_us_p99_fanout']:<8.0f} "
        f"{r['loop_lag_us_p99_signals']:<9.0f} {r['loop_lag_us_p99_stalled']:.0f}"
    )
    print(
        f"  delivery p99 ms   -        {r['delivery_lag_ms_p99_fanout']:<8} "
        f"{r['delivery_lag_ms_p99_signals']:<9} {r['delivery_lag_ms_p99_stalled']}"
    )
    dropped = (
        f"yes, after {r['stalled_dropped_after_s']} s" if r["stalled_client_dropped"] else "NO"
    )
    print(
        f"  stalled client closed as slow consumer (1013): {dropped}; others meanwhile "
        f"{r['delivered_msgs_per_s_stalled']:.0f} msgs/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_json_arg(parser)
    parser.add_argument(
        "--clients", type=int, default=1000, help="WebSocket clients (default 1000)"
    )
    parser.add_argument(
        "--serve-clients", nargs=3, metavar=("URL", "KEY", "N"), help=argparse.SUPPRESS
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fan-out phase")
    args = parser.parse_args()
    import logging

    import uvloop

    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")

    if args.serve_clients:  # the client process
        url, key, n = args.serve_clients
        uvloop.run(run_clients(url, key, int(n)))
        return 0
    result = uvloop.run(measure(args))
    print_figures(result)
    write_json(args.json, result)
    return 0 if result["stalled_client_dropped"] and result["seq_gaps"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
