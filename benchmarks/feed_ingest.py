"""Pyth feed ingest: parsed ticks/s from a fake Hermes SSE stream into the Engine through
PythFeed (`runtime.push_ticks`), against the floor of reading and JSON-decoding the same bytes,
and tick -> exit-decision latency with 10,000 open positions on the ticking tokens.

Set-up, through the public Engine API: 100 Pyth feeds (one mint each); 10 paper agents, each
with its own fixed stop (-50 %, -50.37 %, ...); 10 buy signals per token, each 1 % lower than
the last, filled on paper: 10,000 open positions, every one with its own stop level.

1. Throughput. The fake Hermes (tests/fakes/hermes.py, same process and uvloop loop) writes
   pre-encoded SSE events as fast as the reader takes them: each event carries all 100 feeds
   (parsed entries with ema_price and metadata, and ~64 kB of binary hex, about what Hermes
   sends for 100 feeds: ~97 kB an event). Prices wobble 0.01 % (no exit triggers). Measured, on
   the same stream: ticks/s through PythFeed + Runtime + Engine; the floor (aiohttp reading the
   chunks, splitting `data:` lines, msgspec-decoding each, untyped, as a bare consumer would);
   and the two parts: PythFeed into a no-op push, and `runtime.push_ticks` alone on the same
   parsed ticks.
2. Latency. Events paced one at a time (the loop is idle when each is sent); in each, one token
   falls between two consecutive stop levels, so exactly one position exits. Timed from the
   moment the fake's write of the event returned (its bytes are in our socket) to the runtime's
   event subscriber seeing the ExitTriggered: the read, SSE framing, decoding all 100 entries,
   the engine's ticks ahead of that token in the batch, and the decision. `tick_to_exit_engine_us` is the daemon metric's
   part (tradingd_tick_to_exit_decision_seconds): from the start of `push_ticks`.

    .venv/bin/python benchmarks/feed_ingest.py [--json PATH] [--ticks N] [--budget-s S]
        [--steps N]

Bounded: each throughput measure stops at --ticks or --budget-s (default 1,000,000 / 6 s); the
latency phase sends 100 x --steps events (default 1,200); the whole run takes < 60 s."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402
from _stats import add_json_arg, percentiles, run_loop, write_json  # noqa: E402
from tradingd.adapters.app.runtime import Runtime  # noqa: E402
from tradingd.adapters.app.settings import PythFeedSettings  # noqa: E402
from tradingd.adapters.feeds.pyth import PythFeed  # noqa: E402
from tradingd.adapters.feeds.pyth.parsing import PriceParser  # noqa: E402
from tradingd.adapters.feeds.synthetic import demo_mint  # noqa: E402
from tradingd.adapters.venues.paper import PaperVenue  # noqa: E402
from tradingd.engine import events as ev  # noqa: E402
from tradingd.engine.assets import SOL_MINT  # noqa: E402
from tradingd.engine.config import config_from_builtins  # noqa: E402
from tradingd.engine.core import Engine  # noqa: E402
from tradingd.engine.model import Signal, Tick  # noqa: E402

from tests.fakes.hermes import STREAM_PATH, FakeHermes  # noqa: E402

FEEDS = 100
AGENTS = 10
COHORTS = 10  # buy signals per token: AGENTS x COHORTS x FEEDS = 10,000 positions
BASE_S = 1_796_000_000  # publish_time of the latency phase's first event (unix s)
EXPO = -8
BINARY_HEX_PER_FEED = 620  # ~310 bytes per feed in an accumulator update (message + proof)


class Clock:
    now = (BASE_S - 100) * 1000

    def __call__(self) -> int:
        return self.now


def feed_id(i: int) -> str:
    return hashlib.sha256(b"bench-feed-%d" % i).hexdigest()


def mantissa(price: float) -> str:
    return str(round(price * 10**-EXPO))


class Bench:
    def __init__(self) -> None:
        self.clock = Clock()
        self.engine = Engine(self.clock, max_price_age_ms=10**12)
        venue = PaperVenue(self.engine.price_usd, self.clock)
        self.runtime = Runtime(self.engine, {"paper": venue}, self.clock)
        self.ids = {demo_mint(f"PYTHBENCH{i}"): feed_id(i) for i in range(FEEDS)}
        self.mints = list(self.ids)
        self.base = {m: 1.0 + i / 10 for i, m in enumerate(self.mints)}
        self.price = dict(self.base)

    def open_positions(self) -> int:
        e, rt = self.engine, self.runtime
        for a in range(AGENTS):
            # each agent its own stop distance: every position on a token has its own level
            config = config_from_builtins(
                {
                    "stop_loss": {"mode": "fixed", "default_pct": -50 - 0.37 * a},
                    "sizing": {"mode": "fixed", "amount": "1000000"},
                    "limits": {"max_open_positions": 1000, "max_positions_per_token": COHORTS},
                    "execution": {"slippage_bps": 0, "fee_bps": 0},
                }
            )
            agent = rt.apply(e.create_agent, f"bench{a}", "paper", config, "SOL", agent_id=f"a{a}")
            rt.apply(e.deposit, agent.id, "SOL", 2000 * 1_000_000)
        rt.push_ticks([Tick(SOL_MINT, 150.0, self.clock.now, decimals=9)])
        n = 0
        for k in range(COHORTS):
            for m in self.mints:
                self.price[m] = self.base[m] * 0.99**k
                rt.push_ticks([Tick(m, self.price[m], self.clock.now, "pyth", decimals=6)])
                now = self.clock.now
                rt.apply(
                    e.on_signal,
                    Signal(id=f"s{n}", token=m, received_at=now, expires_at=now + 30_000),
                )
                n += 1
        return sum(1 for p in e.positions.values() if p.status == "open")

    def stop_levels(self) -> dict[str, list[float]]:
        """Per token, its open positions' stop prices (USD), highest first."""
        levels: dict[str, list[float]] = {m: [] for m in self.mints}
        for p in self.engine.positions.values():
            if p.status == "open" and p.stop_gain_pct is not None:
                levels[p.token].append(p.entry_price_usd * (1 + p.stop_gain_pct / 100))
        return {m: sorted(v, reverse=True) for m, v in levels.items()}

    def event_bytes(self, fake: FakeHermes, prices: dict[str, float], publish_time: int) -> bytes:
        for m, fid in self.ids.items():
            fake.set_price(
                fid, mantissa(prices[m]), conf="123456", expo=EXPO, publish_time=publish_time
            )
        return fake.event(list(self.ids.values()))


async def throughput(
    bench: Bench, fake: FakeHermes, push: Callable[[list[Tick]], object], goal: int, budget_s: float
) -> float:
    """Ticks/s PythFeed hands to `push` from a firehose stream (the first event is not timed)."""
    counted = 0
    first = last = 0.0
    done = asyncio.Event()

    def push_ticks(ticks: list[Tick]) -> None:
        nonlocal counted, first, last
        push(ticks)
        if len(ticks) < FEEDS:
            return  # the /latest prime
        now = time.perf_counter()
        if first == 0.0:
            first = now
        else:
            counted += len(ticks)
        last = now
        if counted >= goal or now - first > budget_s:
            done.set()

    fake.stream_mode("firehose")
    settings = PythFeedSettings(url=fake.url, max_event_bytes=4 * 1024 * 1024)
    feed = PythFeed(settings, bench.ids, lambda: bench.mints)
    task = asyncio.create_task(feed.run(push_ticks))
    try:
        await asyncio.wait_for(done.wait(), budget_s + 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if feed.counters()["errors_malformed"] or feed.counters()["errors_unknown_id"]:
        raise SystemExit(f"FAIL: the feed dropped entries: {feed.counters()}")
    return counted / (last - first)


def engine_only(bench: Bench, batches: list[list[Tick]], goal: int, budget_s: float) -> float:
    """Ticks/s of `runtime.push_ticks` alone, on the parsed ticks of the same events."""
    push = bench.runtime.push_ticks
    counted = 0
    started = time.perf_counter()
    while counted < goal and time.perf_counter() - started < budget_s:
        for batch in batches:
            push(batch)
        counted += sum(map(len, batches))
    return counted / (time.perf_counter() - started)


async def floor(bench: Bench, fake: FakeHermes, ticks_goal: int, budget_s: float) -> float:
    fake.stream_mode("firehose")
    query = [("ids[]", i) for i in sorted(bench.ids.values())] + [("parsed", "true")]
    decode = msgspec.json.decode
    counted = 0
    first = last = 0.0
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.url + STREAM_PATH, params=query) as resp:
            tail = b""
            async for chunk in resp.content.iter_any():
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    if line.startswith(b"data:"):
                        n = len(decode(line[5:])["parsed"])
                        now = time.perf_counter()
                        if first == 0.0:
                            first = now
                        else:
                            counted += n
                        last = now
                if counted >= ticks_goal or last - first > budget_s:
                    break
    return counted / (last - first)


async def latency(bench: Bench, fake: FakeHermes, steps: int) -> dict[str, Any]:
    e2e_us: list[float] = []
    engine_us: list[float] = []
    sent_at: dict[int, float] = {}
    current = {"seq": -1}
    arrived = asyncio.Event()
    runtime = bench.runtime

    def push_ticks(ticks: list[Tick]) -> None:
        seq = ticks[0].ts // 1000 - BASE_S
        current["seq"] = seq
        if seq in sent_at:
            sent_at[seq] = fake.last_write_at  # the event's bytes were on our socket
        runtime.push_ticks(ticks)
        arrived.set()

    def on_events(events: list[ev.Event]) -> None:
        seq = current["seq"]
        if seq in sent_at and any(isinstance(x, ev.ExitTriggered) for x in events):
            now = time.perf_counter()
            e2e_us.append((now - sent_at.pop(seq)) * 1e6)
            assert runtime.tick_batch_started is not None
            engine_us.append((now - runtime.tick_batch_started) * 1e6)

    runtime.event_subscribers.append(on_events)
    rng = random.Random(5)
    levels = bench.stop_levels()
    # first every token just above its highest stop; then, one event at a time, one token
    # falls between two consecutive stop levels: exactly one position exits per event
    prices = {m: levels[m][0] * 1.001 for m in bench.mints}
    feed = PythFeed(PythFeedSettings(url=fake.url), bench.ids, lambda: bench.mints)
    task = asyncio.create_task(feed.run(push_ticks))
    exits_before = sum(1 for p in bench.engine.positions.values() if p.status != "open")
    seq = 0
    try:
        await fake.wait_for(lambda: fake.open_streams, 10)
        for step in range(steps):
            for token in bench.mints:
                for m in bench.mints:
                    if m != token:
                        prices[m] *= 1 + rng.uniform(-1e-6, 1e-6)
                lv = levels[token]
                prices[token] = (lv[step] + lv[step + 1]) / 2
                data = bench.event_bytes(fake, prices, BASE_S + seq)
                arrived.clear()
                sent_at[seq] = time.perf_counter()
                await fake.send_raw(data)
                await asyncio.wait_for(arrived.wait(), 10)
                sent_at.pop(seq, None)
                seq += 1
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        runtime.event_subscribers.remove(on_events)
    exits = sum(1 for p in bench.engine.positions.values() if p.status != "open") - exits_before
    return {"e2e_us": e2e_us, "engine_us": engine_us, "events": seq, "positions_exited": exits}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    bench = Bench()
    opened = bench.open_positions()
    print(f"{opened} open positions on {FEEDS} tokens ({time.monotonic() - started:.1f} s set-up)")
    fake = FakeHermes(binary_hex_per_feed=BINARY_HEX_PER_FEED)
    await fake.start()
    try:
        bench.clock.now = (BASE_S + 100_000) * 1000
        wobble = random.Random(1)
        events = [
            bench.event_bytes(
                fake,
                {m: p * (1 + wobble.uniform(-1e-4, 1e-4)) for m, p in bench.price.items()},
                BASE_S - 1,
            )
            for _ in range(32)
        ]
        payload = b"".join(events)
        fake.firehose_payload = payload
        fake.firehose_repeat = math.ceil(args.ticks * 2 / FEEDS / len(events))
        goal, budget = args.ticks, args.budget_s
        rate = await throughput(bench, fake, bench.runtime.push_ticks, goal, budget)
        floor_rate = await floor(bench, fake, goal, budget)
        feed_rate = await throughput(bench, fake, lambda ticks: None, goal, budget)
        parser = PriceParser({i: (m,) for m, i in bench.ids.items()})
        batches = [parser.parse(e[5:-2]).ticks for e in events]
        engine_rate = engine_only(bench, batches, goal, budget)
        lat = await latency(bench, fake, args.steps)
    finally:
        await fake.close()
    e2e, eng = percentiles(lat["e2e_us"]), percentiles(lat["engine_us"])
    out = {
        "feeds": FEEDS,
        "open_positions": opened,
        "event_bytes": len(events[0]),
        "ticks_per_s": round(rate),
        "floor_ticks_per_s": round(floor_rate),
        "ratio": round(rate / floor_rate, 3),
        "feed_only_ticks_per_s": round(feed_rate),
        "feed_only_ratio": round(feed_rate / floor_rate, 3),
        "engine_only_ticks_per_s": round(engine_rate),
        "tick_to_exit_us": e2e,
        "tick_to_exit_us_p99": e2e["p99"],
        "tick_to_exit_engine_us": eng,
        "latency_events": lat["events"],
        "positions_exited": lat["positions_exited"],
        "seconds": round(time.monotonic() - started, 1),
    }
    print(
        f"event {out['event_bytes']} bytes ({FEEDS} feeds): PythFeed -> Engine {rate:,.0f} ticks/s, "
        f"floor (read + msgspec decode) {floor_rate:,.0f} ticks/s: {out['ratio']:.0%} of the floor\n"
        f"parts: PythFeed into a no-op {feed_rate:,.0f} ticks/s ({out['feed_only_ratio']:.0%} of the "
        f"floor); runtime.push_ticks alone {engine_rate:,.0f} ticks/s\n"
        f"tick -> exit decision, {int(e2e['count'])} events with one exit each ({lat['positions_exited']} exited): "
        f"p50 {e2e['p50']:.0f} us, p99 {e2e['p99']:.0f} us, max {e2e['max']:.0f} us "
        f"(engine part p99 {eng['p99']:.0f} us); total {out['seconds']} s"
    )
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_json_arg(parser)
    parser.add_argument("--ticks", type=int, default=1_000_000, help="ticks per throughput measure")
    parser.add_argument("--budget-s", type=float, default=6.0, help="time bound of each measure")
    parser.add_argument(
        "--steps", type=int, default=12, help="exits per token in the latency phase (<= 99)"
    )
    args = parser.parse_args()
    result = run_loop(main(args))
    write_json(args.json, result)


if __name__ == "__main__":
    cli()
