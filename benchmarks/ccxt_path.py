"""Signal-to-exchange latency of the CCXT venue: from submitting a buy signal to the real Engine
+ Runtime + CcxtVenue until the fake Binance has READ the market order's request, with 1 and 20
eligible agents on one account, next to the bare CCXT floor measured in the same run: the same
`create_market_buy_order_with_cost` call through the same ccxt exchange object to the same fake.

The fake runs as `python -m tests.fakes.binance_process --port-file PATH` (127.0.0.1, no delays,
market orders fill at once), so its work (signature check, matching, JSON) is not on the loop
under test. Its receive stamp is its `time.monotonic_ns()` once an order request was read; our
start stamp is taken just before `submit_signal` (or, for the floor, just before the ccxt call):
CLOCK_MONOTONIC is system-wide on Linux, so the two compare. The venue is built as the daemon
builds it (adapters/app/exchanges.py: ExchangeClient behind a circuit breaker, the account's
default settings), with the memory store: the journal applies Engine.on_exchange_order_sent and
nothing is written to disk. On uvloop, as `tradingd run`.

    .venv/bin/python benchmarks/ccxt_path.py [--json PATH] [--rounds N] [--budget-s S]

Figures are microseconds. For K agents, `p*_us` is the time until the LAST of the K orders of a
signal reached the fake (`first_*` the first). `overhead_p*_us` = our 1-agent figure minus the
floor's (call -> request read), each signal followed by one bare call in the same loop: the
target is <= 1,000 us at p99. Three phases: 1 agent and 20 agents with CCXT's rate limiter on
(as the daemon runs it: its leaky bucket refills only while requests wait, so every Binance
order waits ~10 ms after the previous one, idle or not), and 1 agent with it off (our code path
and CCXT's request building alone). Each phase is bounded by --rounds and --budget-s."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from _fake_process import fake_process
from _stats import add_json_arg, percentiles, run_loop, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ccxt.async_support as ccxt_async  # noqa: E402
from tradingd.adapters.app.exchange_settings import ExchangeAccountSettings  # noqa: E402
from tradingd.adapters.app.runtime import Runtime  # noqa: E402
from tradingd.adapters.venues.breaker import CircuitBreaker  # noqa: E402
from tradingd.adapters.venues.ccxt.client import ExchangeClient  # noqa: E402
from tradingd.adapters.venues.ccxt.markets import market_rules  # noqa: E402
from tradingd.adapters.venues.ccxt.venue import CcxtVenue  # noqa: E402
from tradingd.engine.config import config_from_builtins  # noqa: E402
from tradingd.engine.core import Engine  # noqa: E402
from tradingd.engine.model import ExchangeSubmission, Signal, Tick  # noqa: E402

from tests.fakes.binance_ccxt import FAKE_OPTIONS, point_at  # noqa: E402

TOKEN = "binance:BTC/USDT"
SYMBOL = "BTC/USDT"
ACCOUNT = "bench"
VENUE = f"ccxt:{ACCOUNT}"
BUY_USDT = 10  # a buy: 10 USDT (Binance's least notional for BTC/USDT is 5)
GAP_S = 0.06  # between timed calls: CCXT's limiter (binance rateLimit 50 ms) has a token
DEPOSIT = 10**6 * 10**6  # per agent: 1,000,000 USDT, atomic
WAIT_S = 10.0
AGENT_CONFIG = {
    "sizing": {"mode": "fixed", "amount": str(BUY_USDT * 10**6)},
    "limits": {"max_open_positions": 100_000, "max_positions_per_token": 1000},
    "stop_loss": {"enabled": False},
}


class Fake:
    """The fake exchange process: its URLs and the control calls the benchmark needs."""

    def __init__(self, doc: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.url, self.ws_url, self.control_url = doc["url"], doc["ws_url"], doc["control_url"]
        self.api_key, self.secret = doc["api_key"], doc["secret"]
        self._session = session

    async def control(self, doc: dict[str, Any]) -> None:
        async with self._session.post(self.control_url + "/control", json=doc) as resp:
            resp.raise_for_status()

    async def received(self) -> dict[str, int]:
        """Client order id -> the fake's monotonic ns when it read that order request."""
        async with self._session.get(self.control_url + "/control/orders") as resp:
            doc = await resp.json()
        return {cid: ns for cid, ns in doc["orders"] if cid}


@contextlib.asynccontextmanager
async def fake_exchange() -> AsyncIterator[Fake]:
    """The fake Binance process, steered over its control app."""
    async with fake_process("tests.fakes.binance_process", "ccxt_path") as doc:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            yield Fake(doc, s)


class Clock:
    """Engine time, epoch ms: moved on by hand so prices never go stale mid-run."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


class Journal:
    """The daemon's journal on the memory store: apply on_exchange_order_sent, nothing to flush."""

    def __init__(self, engine: Engine, runtime: Runtime) -> None:
        self.engine, self.runtime = engine, runtime

    async def exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> None:
        self.runtime.apply(self.engine.on_exchange_order_sent, order_id, sent)


def exchange_for(fake: Fake) -> ccxt_async.binance:
    exchange = ccxt_async.binance(
        {"apiKey": fake.api_key, "secret": fake.secret, "timeout": 5_000,
         "enableRateLimit": True, "options": dict(FAKE_OPTIONS)}
    )  # fmt: skip
    point_at(exchange, fake.url, fake.ws_url)
    return exchange


class Path_:
    """Engine + Runtime + CcxtVenue with `agents` agents on one account; `starts` holds our
    time.monotonic_ns() stamp of each timed signal."""

    def __init__(self, exchange: ccxt_async.binance, agents: int) -> None:
        self.starts: list[int] = []
        self.clock = Clock()
        rules = market_rules(exchange.markets[SYMBOL], exchange.precisionMode)
        self.engine = Engine(
            self.clock, instruments={TOKEN: rules}, venue_exchanges={VENUE: "binance"}
        )
        self.runtime = Runtime(self.engine, {}, self.clock)
        client = ExchangeClient(
            ACCOUNT, exchange, CircuitBreaker(ACCOUNT, failure_threshold=5, reset_after_s=30), 5.0
        )
        self.venue = CcxtVenue(
            ACCOUNT,
            client,
            journal=Journal(self.engine, self.runtime),
            rules_of=self.engine.instruments.get,
            price_of=self.engine.price_usd,
            clock=self.clock,
            settings=ExchangeAccountSettings(exchange="binance"),
            alert=lambda *_: None,
        )
        self.runtime.venues[VENUE] = self.venue
        config = config_from_builtins(AGENT_CONFIG)
        for i in range(agents):
            agent = self.runtime.apply(self.engine.create_agent, f"a{i}", VENUE, config, "USDT")
            self.runtime.apply(self.engine.deposit, agent.id, "USDT", DEPOSIT)
        self.n = agents
        self.rounds = 0

    async def one_signal(self, *, timed: bool = True) -> None:
        """Submit one buy signal and wait until its orders are done; raises RuntimeError if
        they are still in flight after WAIT_S or one failed."""
        self.rounds += 1
        self.clock.now += 1_000
        self.runtime.push_ticks([Tick(TOKEN, 65_000.0, self.clock.now)])
        now = self.clock()
        signal = Signal(id=f"s{self.rounds}", token=TOKEN, side="buy", strength=5,
                        received_at=now, expires_at=now + 30_000)  # fmt: skip
        started = time.monotonic_ns()
        record, _ = self.runtime.submit_signal(signal)
        if timed:
            self.starts.append(started)
        if not await self.runtime.wait_orders(WAIT_S):
            raise RuntimeError("orders still in flight")
        bad = [e.reason for e in record.executions.values() if e.status != "filled"]
        if bad:
            raise RuntimeError(f"orders did not fill: {bad[:3]}")


def per_signal(p: Path_, received: dict[str, int]) -> dict[str, list[float]]:
    """Seconds per timed signal, from the fake's stamps: the first and the last of its K orders
    read by the fake. Raises RuntimeError on a signal without K orders."""
    stamps = sorted(received.values())
    out: dict[str, list[float]] = {"first": [], "last": []}
    bounds = [*p.starts, 2**63]
    for start, end in zip(bounds, bounds[1:], strict=False):
        mine = [ns for ns in stamps if start <= ns < end]
        if len(mine) != p.n:
            raise RuntimeError(f"{len(mine)} orders for {p.n} agents")
        out["first"].append((mine[0] - start) / 1e9)
        out["last"].append((mine[-1] - start) / 1e9)
    return out


async def bare_call(exchange: ccxt_async.binance, cid: str) -> tuple[int, float]:
    """One bare CCXT call on the same exchange object: `create_market_buy_order_with_cost` with
    a client order id. Returns our start stamp (monotonic ns) and the round trip (s)."""
    started = time.monotonic_ns()
    await exchange.create_market_buy_order_with_cost(SYMBOL, BUY_USDT, {"newClientOrderId": cid})
    return started, (time.monotonic_ns() - started) / 1e9


def us(samples: list[float]) -> dict[str, float]:
    return {k: (v * 1e6 if k != "count" else v) for k, v in percentiles(samples).items()}


async def phase(
    agents: int, n_rounds: int, budget_s: float, result: dict[str, Any], *, rate_limit: bool
) -> None:
    """One phase against a fresh fake process: warm-up, then timed signals, each (with one
    agent) followed by one bare CCXT call, `GAP_S` apart so CCXT's limiter (when on) has a
    token for each, as for a signal arriving alone; fills `result[key]`."""
    key = f"{agents}_agent{'s' if agents > 1 else ''}" + ("" if rate_limit else "_no_rate_limit")
    async with fake_exchange() as fake:
        await fake.control({"balance": {"USDT": "1000000000"}, "price": {SYMBOL: "65000"}})
        exchange = exchange_for(fake)
        try:
            await exchange.load_markets()
            p = Path_(exchange, agents)
            exchange.enableRateLimit = rate_limit  # after the client, which turns it on
            for i in range(3):  # warm the connection pool and caches, untimed
                await p.one_signal(timed=False)
                await bare_call(exchange, f"warm-{i}")
            bare_starts: dict[str, int] = {}
            bare_rtt: list[float] = []
            deadline = time.monotonic() + budget_s
            done = 0
            while done < n_rounds and time.monotonic() < deadline:
                await asyncio.sleep(GAP_S)
                await p.one_signal()
                if agents == 1:
                    await asyncio.sleep(GAP_S)
                    cid = f"bare-{done}"
                    bare_starts[cid], rtt = await bare_call(exchange, cid)
                    bare_rtt.append(rtt)
                done += 1
            received = await fake.received()
            ours = {cid: ns for cid, ns in received.items() if cid.startswith("td-")}
            samples = per_signal(p, ours)
            last, first = us(samples["last"]), us(samples["first"])
            out: dict[str, Any] = {
                "p50_us": last["p50"], "p99_us": last["p99"], "p999_us": last["p999"],
                "first_p50_us": first["p50"], "first_p99_us": first["p99"],
                "signals": len(samples["last"]),
            }  # fmt: skip
            if agents == 1:
                send = us([(received[c] - ns) / 1e9 for c, ns in bare_starts.items()])
                rtt = us(bare_rtt)
                out["ccxt_floor"] = {
                    "send_p50_us": send["p50"], "send_p99_us": send["p99"],
                    "send_p999_us": send["p999"], "round_trip_p50_us": rtt["p50"],
                    "round_trip_p99_us": rtt["p99"], "calls": len(bare_starts),
                }  # fmt: skip
                out["overhead_p50_us"] = out["p50_us"] - send["p50"]
                out["overhead_p99_us"] = out["p99_us"] - send["p99"]
            result[key] = out
        finally:
            await exchange.close()


async def run(rounds: int, budget_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"fake": "separate process", "store": "memory", "gap_s": GAP_S}
    await phase(1, rounds, budget_s, result, rate_limit=True)
    await phase(20, max(1, rounds // 20), budget_s, result, rate_limit=True)
    await phase(1, rounds, budget_s, result, rate_limit=False)
    one = result["1_agent"]
    result["target"] = {
        "rule": "1 agent: p99 - ccxt floor p99 <= 1000 us",
        "met": one["overhead_p99_us"] <= 1000,
        "met_without_rate_limit": result["1_agent_no_rate_limit"]["overhead_p99_us"] <= 1000,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_json_arg(parser)
    parser.add_argument(
        "--rounds", type=int, default=300, help="signals with 1 agent (at most 990: one token)"
    )
    parser.add_argument("--budget-s", type=float, default=60.0, help="time bound per phase")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, 990))  # positions per token are capped at 1000
    result = run_loop(run(rounds, args.budget_s))
    for key in ("1_agent", "20_agents", "1_agent_no_rate_limit"):
        v = result[key]
        print(f"{key:>22}: p50 {v['p50_us']:8.0f} us  p99 {v['p99_us']:8.0f} us  "
              f"p99.9 {v['p999_us']:8.0f} us  ({v['signals']} signals)")  # fmt: skip
        if "ccxt_floor" in v:
            f = v["ccxt_floor"]
            print(f"{'bare ccxt create_order':>22}: p50 {f['send_p50_us']:8.0f} us  p99 "
                  f"{f['send_p99_us']:8.0f} us  p99.9 {f['send_p999_us']:8.0f} us  (until the "
                  f"fake read it; round trip p50 {f['round_trip_p50_us']:.0f} us)")  # fmt: skip
            print(f"{'our overhead':>22}: p50 {v['overhead_p50_us']:8.0f} us  p99 "
                  f"{v['overhead_p99_us']:8.0f} us")  # fmt: skip
    t = result["target"]
    print(f"target {t['rule']}: {'met' if t['met'] else 'NOT met'} with CCXT's rate limiter, "
          f"{'met' if t['met_without_rate_limit'] else 'NOT met'} without")  # fmt: skip
    write_json(args.json, result)


if __name__ == "__main__":
    main()
