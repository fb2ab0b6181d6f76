"""Write-behind benchmark: how fast the writer drains the stream into Postgres (COPY and
executemany), its lag at a sustained 10,000 events/s, and what persistence costs signal->trade
latency (p99 with the embedded store over p99 with the memory store), all in one run.

    .venv/bin/python benchmarks/write_behind.py [--json PATH] [--events N]

Uses the embedded Redis/Postgres in a temporary data dir, or REDIS_URL / DATABASE_URL."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradingd.adapters.app.runtime import Runtime  # noqa: E402
from tradingd.adapters.app.settings import Settings  # noqa: E402
from tradingd.adapters.store import open_store  # noqa: E402
from tradingd.adapters.store import postgres as pg  # noqa: E402
from tradingd.adapters.store.embedded import EmbeddedServers  # noqa: E402
from tradingd.adapters.store.records import Entry, EntryIds, to_entries, with_records  # noqa: E402
from tradingd.adapters.store.redis import client  # noqa: E402
from tradingd.adapters.store.stream_codec import (  # noqa: E402
    WRITE_SCRIPT,
    Keys,
    write_args,
    write_keys,
)
from tradingd.adapters.store.writer import WriteBehind  # noqa: E402
from tradingd.adapters.timestamps import wall_clock_ms  # noqa: E402
from tradingd.adapters.venues.paper import PaperVenue  # noqa: E402
from tradingd.engine import events as ev  # noqa: E402
from tradingd.engine.assets import SOL_MINT  # noqa: E402
from tradingd.engine.config import config_from_builtins  # noqa: E402
from tradingd.engine.core import Engine  # noqa: E402
from tradingd.engine.model import Signal, Tick  # noqa: E402
from tradingd.engine.ports import HealthRegistry  # noqa: E402

TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- a realistic event mix, from a real engine --------------------------------------------------


async def event_mix(n_signals: int = 400) -> list[ev.Event]:
    engine = Engine(wall_clock_ms)
    runtime = Runtime(engine, {"paper": PaperVenue(engine.price_usd, wall_clock_ms)})
    events: list[ev.Event] = []
    runtime.event_subscribers.append(lambda evs: events.extend(with_records(evs, engine)))
    config = config_from_builtins(
        {
            "limits": {"max_open_positions": 10_000, "max_positions_per_token": 1000},
            "stop_loss": {"mode": "trailing", "trail_pct": 3},
            "take_profit": {"enabled": True, "levels": [{"gain_pct": 4, "sell_pct": 50}]},
        }
    )
    for i in range(4):
        runtime.apply(engine.create_agent, f"a{i}", "paper", config, "SOL", None, f"agent{i}")
        runtime.apply(engine.deposit, f"agent{i}", "SOL", 10**13)
    rng = random.Random(1)
    prices = dict.fromkeys(TOKENS, 1.0)
    for i in range(n_signals):
        now = wall_clock_ms()
        for t in TOKENS:
            prices[t] *= 1 + rng.uniform(-0.02, 0.021)
        runtime.push_ticks(
            [
                Tick(SOL_MINT, 150.0, now, decimals=9),
                *(Tick(t, p, now, decimals=6) for t, p in prices.items()),
            ]
        )
        runtime.apply(
            engine.on_signal,
            Signal(id=f"s{i}", token=rng.choice(TOKENS), received_at=now, expires_at=now + 30_000),
        )
        await asyncio.sleep(0)
    await runtime.wait_orders(5)
    return events


def entries_of(mix: list[ev.Event], n: int, ids: EntryIds) -> list[Entry]:
    base = to_entries(mix, ids)
    out: list[Entry] = []
    while len(out) < n:
        out.extend(
            Entry(ids.next(), e.type, e.key, e.agent, e.payload) for e in base[: n - len(out)]
        )
    return out


# -- 1. drain rate -------------------------------------------------------------------------------


async def drain_rate(
    redis_url: str, database_url: str, mix: list[ev.Event], n: int, mode: str
) -> float:
    ns = f"bench_{mode}_{os.getpid()}"
    keys = Keys(ns)
    r = client(redis_url, timeout=30)
    await pg.migrate(database_url, ns)
    entries = entries_of(mix, n, EntryIds())
    script = r.register_script(WRITE_SCRIPT)
    for i in range(0, len(entries), 5000):
        await script(keys=write_keys(keys), args=write_args(entries[i : i + 5000], None))
    writer = WriteBehind(
        r, keys, database_url, ns, on_status=lambda up, why: None, mode=mode, linger_ms=0
    )  # type: ignore[arg-type]
    await writer.ensure_group()
    started = time.perf_counter()
    task = asyncio.create_task(writer.run())
    while writer.written < n:
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - started
    writer.stopped = True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await writer.close()
    await _drop(r, keys, database_url, ns)
    return n / seconds


async def _drop(r, keys: Keys, database_url: str, ns: str) -> None:
    import asyncpg

    async for k in r.scan_iter(match=f"{keys.ns}:*"):
        await r.delete(k)
    await r.aclose()
    conn = await asyncpg.connect(database_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
    await conn.close()


# -- 2. lag at a sustained rate ------------------------------------------------------------------


async def lag_at_rate(
    redis_url: str, database_url: str, mix: list[ev.Event], rate: int, seconds: float
) -> float:
    ns = f"bench_lag_{os.getpid()}"
    keys = Keys(ns)
    r = client(redis_url, timeout=30)
    await pg.migrate(database_url, ns)
    writer = WriteBehind(r, keys, database_url, ns, on_status=lambda up, why: None)
    await writer.ensure_group()
    lags: list[float] = []
    writer.observers.append(
        lambda batch, committed: lags.extend(committed - (e.id >> 20) for e in batch)
    )
    task = asyncio.create_task(writer.run())
    script = r.register_script(WRITE_SCRIPT)
    ids = EntryIds()
    base = to_entries(mix, ids)
    tick_s = 0.01
    per_tick = int(rate * tick_s)
    produced, i = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [
            Entry(ids.next(), e.type, e.key, e.agent, e.payload) for e in base[i : i + per_tick]
        ]
        i = (i + per_tick) % max(1, len(base) - per_tick)
        await script(keys=write_keys(keys), args=write_args(batch, None))
        produced += len(batch)
        target = started + (produced / rate)
        await asyncio.sleep(max(0.0, target - time.perf_counter()))
    while writer.written < produced:
        await asyncio.sleep(0.01)
    writer.stopped = True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await writer.close()
    await _drop(r, keys, database_url, ns)
    return pct(lags, 0.99)


# -- 3. signal -> trade latency, memory vs embedded store ----------------------------------------


class Node:
    def __init__(self, data_dir: Path, store: str, redis_url: str, database_url: str) -> None:
        self.settings = Settings()
        self.settings.store.kind = store  # type: ignore[assignment]
        self.settings.store.redis_url = redis_url
        self.settings.store.database_url = database_url
        self.data_dir = data_dir
        self.engine = Engine(wall_clock_ms)
        self.runtime = Runtime(
            self.engine, {"paper": PaperVenue(self.engine.price_usd, wall_clock_ms)}
        )
        self.components: HealthRegistry = {}
        self.cleanups: list = []


async def signal_to_trade_p99(
    store: str, data_dir: Path, redis_url: str, database_url: str, signals: int, rate: float
) -> float:
    node = Node(data_dir, store, redis_url, database_url)
    e, rt = node.engine, node.runtime
    opened = await open_store(
        node.settings.store,
        e,
        node.data_dir,
        node.components,
        lambda events: [sub(events) for sub in list(rt.event_subscribers)],
        namespace=f"bench_lat_{os.getpid()}",
    )
    s = opened.store  # wired as Daemon.open_store wires it
    rt.event_subscribers.insert(0, s.on_events)
    rt.tick_subscribers.append(s.on_ticks)
    node.cleanups.append(s.close)
    config = config_from_builtins(
        {
            "limits": {"max_open_positions": 100_000, "max_positions_per_token": 1000},
            "sizing": {"amount": "1000000"},
            "stop_loss": {"mode": "trailing", "trail_pct": 5},
        }
    )
    for i in range(4):
        rt.apply(e.create_agent, f"a{i}", "paper", config, "SOL", None, f"lat{i}")
        rt.apply(e.deposit, f"lat{i}", "SOL", 10**15)
    started_at: dict[str, float] = {}
    latencies: list[float] = []

    def on_events(events: list[ev.Event]) -> None:
        for x in events:
            if type(x) is ev.OrderFilled and x.trade.side == "buy":
                order_signal = fills.pop(x.order_id, None)
                if order_signal is not None and order_signal in started_at:
                    latencies.append((time.perf_counter() - started_at[order_signal]) * 1000)
            elif type(x) is ev.OrderSubmitted and x.order.signal_id is not None:
                fills[x.order.id] = x.order.signal_id

    fills: dict[str, str] = {}
    rt.event_subscribers.append(on_events)
    rng = random.Random(5)
    prices = dict.fromkeys(TOKENS, 1.0)

    async def ticker() -> None:
        while True:
            now = wall_clock_ms()
            for t in TOKENS:
                prices[t] *= 1 + rng.uniform(-0.002, 0.002)
            rt.push_ticks(
                [
                    Tick(SOL_MINT, 150.0, now, decimals=9),
                    *(Tick(t, p, now, decimals=6) for t, p in prices.items()),
                ]
            )
            await asyncio.sleep(0.002)

    tick_task = asyncio.create_task(ticker())
    await asyncio.sleep(0.2)
    for i in range(signals):
        now = wall_clock_ms()
        sig = Signal(
            id=f"{store}-{i}",
            token=TOKENS[i % 3],
            received_at=now,
            expires_at=now + 30_000,
            client_id=f"{store}-{i}",
        )
        started_at[sig.id] = time.perf_counter()
        rt.apply(e.on_signal, sig)
        await s.flushed()  # what the REST handler awaits before answering 202
        await asyncio.sleep(1 / rate)
    await rt.wait_orders(5)
    tick_task.cancel()
    await asyncio.gather(tick_task, return_exceptions=True)
    for cleanup in reversed(node.cleanups):
        await cleanup()
    if store != "memory":
        r = client(redis_url)
        await _drop(r, Keys(f"bench_lat_{os.getpid()}"), database_url, f"bench_lat_{os.getpid()}")
    return pct(latencies, 0.99)


async def main(args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="tradingd-bench-"))
    servers = None
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    if not (redis_url and database_url):
        servers = EmbeddedServers(tmp / "servers")
        r, d = servers.start()
        redis_url, database_url = redis_url or r, database_url or d
    try:
        mix = await event_mix()
        print(f"event mix: {len(mix)} events from a paper run", file=sys.stderr)
        copy = await drain_rate(redis_url, database_url, mix, args.events, "copy")
        print(f"drain COPY:        {copy:,.0f} events/s", file=sys.stderr)
        many = await drain_rate(redis_url, database_url, mix, args.events, "executemany")
        print(f"drain executemany: {many:,.0f} events/s", file=sys.stderr)
        lag = await lag_at_rate(redis_url, database_url, mix, 10_000, args.lag_seconds)
        print(f"writer lag p99 at 10,000 events/s: {lag:.1f} ms", file=sys.stderr)
        mem = await signal_to_trade_p99(
            "memory", tmp / "mem", redis_url, database_url, args.signals, args.rate
        )
        per = await signal_to_trade_p99(
            "external", tmp / "per", redis_url, database_url, args.signals, args.rate
        )
        print(
            f"signal->trade p99: memory {mem:.3f} ms, embedded store {per:.3f} ms", file=sys.stderr
        )
    finally:
        if servers is not None:
            servers.stop()
    return {
        "drain_events_per_s_copy": round(copy),
        "drain_events_per_s_executemany": round(many),
        "lag_ms_p99_at_10k": round(lag, 1),
        "p99_ratio_persistent_vs_memory": round(per / mem, 3) if mem else 0.0,
        "signal_to_trade_p99_ms_memory": round(mem, 3),
        "signal_to_trade_p99_ms_persistent": round(per, 3),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures as JSON to this path")
    parser.add_argument("--events", type=int, default=200_000, help="events drained per mode")
    parser.add_argument("--lag-seconds", type=float, default=5.0)
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=400.0, help="signals per second")
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(main(args))
    except ImportError:
        result = asyncio.run(main(args))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    _ = statistics


if __name__ == "__main__":
    cli()
