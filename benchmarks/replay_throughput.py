"""Ticks/s and signals/s through the whole Engine with the paper venue, as a backtest runs it.

State is built through the public Engine API: 1,000 agents (each listening to one of 10 signal
types, mixed stop modes, take-profit and DCA), funded, priced, then 100 buy signals filled on
paper give 10,000 open positions over 50 tokens. Then, timed:
- a stream of ticks: a seeded random walk over the tokens (most ticks trigger nothing; the
  exits and DCA buys that do trigger are filled on paper inside the timing);
- a stream of buy signals: random type and token, each matched by 100 agents, filled on paper.

    .venv/bin/python benchmarks/replay_throughput.py [--json PATH] [--ticks N] [--signals N]

Each timed phase stops at --budget-s seconds, so the whole run stays well under 3 minutes."""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from _stats import add_json_arg, percentiles, write_json
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.venues.paper import settle_paper
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import AgentConfig, config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal, Tick

T0 = 1_767_225_600_000
TYPES = 10
TOKENS_PER_TYPE = 10  # each type's agents hold this many tokens: agents x this = positions
STOP_MODES = ("fixed", "trailing", "zones", "exponential")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Bench:
    def __init__(self, agents: int, tokens: int, seed: int) -> None:
        self.clock = Clock()
        self.engine = Engine(self.clock)
        self.rng = random.Random(seed)
        self.tokens = [demo_mint(f"BENCH{i}") for i in range(tokens)]
        self.prices = {t: 1.0 for t in self.tokens}
        self.n_agents = agents
        self.fills = 0
        self.rejected = 0
        self.events = 0
        self.signal_seq = 0

    def settle(self) -> None:
        fills, rejected = settle_paper(self.engine, self.clock.now, self._count)
        self.fills += fills
        self.rejected += rejected

    def _count(self, events: list) -> None:
        self.events += len(events)

    def config(self, i: int) -> AgentConfig:
        return config_from_builtins(
            {
                "signals": {"types": [f"t{i % TYPES}"]},
                "sizing": {"mode": "fixed", "amount": "100000000"},
                "limits": {"max_open_positions": 50, "max_positions_per_token": 1},
                "stop_loss": {
                    "mode": STOP_MODES[i % len(STOP_MODES)],
                    "trail_pct": 10 + i % 7,
                    "default_pct": -25,
                },
                "take_profit": {
                    "enabled": i % 2 == 0,
                    "levels": [{"gain_pct": 40, "sell_pct": 50}],
                },
                "dca": {
                    "enabled": i % 3 == 0,
                    "levels": [{"drop_pct": -15, "buy_pct": 50}],
                    "max_count": 1,
                },
            }
        )

    def step_price(self, token: str, sigma: float) -> float:
        price = self.prices[token] * (1.0 + self.rng.gauss(0.0, sigma))
        self.prices[token] = price
        return price

    def tick(self, token: str, price: float, decimals: int = 6) -> None:
        self.engine.on_tick(Tick(token, price, self.clock.now, "bench", decimals=decimals))
        self.settle()

    def signal(self, token: str, type_: str) -> None:
        self.signal_seq += 1
        now = self.clock.now
        sig = Signal(
            id=f"sig-{self.signal_seq}",
            token=token,
            type=type_,
            strength=3,
            received_at=now,
            expires_at=now + 30_000,
        )
        self.engine.on_signal(sig)
        self.settle()

    def build(self) -> int:
        """Agents, deposits, prices, then TYPES x TOKENS_PER_TYPE signals: agents x 10 positions."""
        engine = self.engine
        for i in range(self.n_agents):
            agent = engine.create_agent(
                f"bench-{i}", "paper", self.config(i), "SOL", agent_id=f"agt-{i:05d}"
            )
            engine.deposit(agent.id, "SOL", 100 * 10**9)
        self.tick(SOL_MINT, 150.0, 9)
        for token in self.tokens:
            self.tick(token, self.prices[token])
        n = len(self.tokens)
        for k in range(TYPES):
            for j in range(TOKENS_PER_TYPE):
                token = self.tokens[(k * n // TYPES + j) % n]
                self.clock.now += 10
                self.tick(token, self.step_price(token, 0.002))  # entries differ a little
                self.signal(token, f"t{k}")
        return sum(1 for p in engine.positions.values() if p.status == "open")


def time_ticks(b: Bench, count: int, budget_s: float) -> dict[str, Any]:
    # Pre-generate the walk so the timing holds only the engine and the paper venue.
    stream: list[tuple[str, float, int]] = []
    tokens = b.tokens
    for i in range(count):
        if i % 100 == 0:
            stream.append((SOL_MINT, 150.0 * (1 + b.rng.gauss(0, 0.0005)), 9))
        token = tokens[b.rng.randrange(len(tokens))]
        stream.append((token, b.step_price(token, 0.001), 6))
    engine, clock, settle = b.engine, b.clock, b.settle
    fills_before, samples = b.fills, []
    start = time.perf_counter()
    deadline = start + budget_s
    done = 0
    for token, price, decimals in stream:
        clock.now += 1
        t0 = time.perf_counter_ns()
        engine.on_tick(Tick(token, price, clock.now, "bench", decimals=decimals))
        settle()
        samples.append((time.perf_counter_ns() - t0) / 1000)
        done += 1
        if done % 1024 == 0 and time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - start
    return {
        "ticks": done,
        "seconds": elapsed,
        "ticks_per_s": done / elapsed,
        "fills": b.fills - fills_before,
        "latency_us": percentiles(samples),
    }


def time_signals(b: Bench, count: int, budget_s: float) -> dict[str, Any]:
    plan = [
        (b.tokens[b.rng.randrange(len(b.tokens))], f"t{b.rng.randrange(TYPES)}")
        for _ in range(count)
    ]
    fills_before, events_before, samples = b.fills, b.events, []
    start = time.perf_counter()
    deadline = start + budget_s
    done = 0
    for token, type_ in plan:
        b.clock.now += 1
        t0 = time.perf_counter_ns()
        b.signal(token, type_)
        samples.append((time.perf_counter_ns() - t0) / 1000)
        done += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - start
    return {
        "signals": done,
        "seconds": elapsed,
        "signals_per_s": done / elapsed,
        "buys": b.fills - fills_before,
        "events_per_signal": (b.events - events_before) / max(done, 1),
        "latency_us": percentiles(samples),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_json_arg(parser)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--signals", type=int, default=5_000)
    parser.add_argument("--budget-s", type=float, default=45.0, help="cap per timed phase")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    bench = Bench(args.agents, args.tokens, args.seed)
    t0 = time.perf_counter()
    positions = bench.build()
    setup_s = time.perf_counter() - t0
    print(
        f"setup: {args.agents} agents, {positions} open positions on {args.tokens} tokens in {setup_s:.2f} s"
    )
    ticks = time_ticks(bench, args.ticks, args.budget_s)
    lat = ticks["latency_us"]
    print(
        f"ticks:   {ticks['ticks_per_s']:>10,.0f} /s  ({ticks['ticks']} ticks in {ticks['seconds']:.2f} s, "
        f"{ticks['fills']} exit/DCA fills; latency us p50 {lat['p50']:.1f} p99 {lat['p99']:.1f} "
        f"p999 {lat['p999']:.1f} max {lat['max']:.0f})"
    )
    open_after_ticks = sum(1 for p in bench.engine.positions.values() if p.status == "open")
    signals = time_signals(bench, args.signals, args.budget_s)
    lat = signals["latency_us"]
    print(
        f"signals: {signals['signals_per_s']:>10,.0f} /s  ({signals['signals']} signals x {args.agents} agents in "
        f"{signals['seconds']:.2f} s, {signals['buys']} buys filled, {signals['events_per_signal']:.0f} events/signal; latency us p50 {lat['p50']:.0f} "
        f"p99 {lat['p99']:.0f} max {lat['max']:.0f})"
    )
    write_json(
        args.json,
        {
            "ticks_per_s": ticks["ticks_per_s"],
            "signals_per_s": signals["signals_per_s"],
            "setup": {
                "agents": args.agents,
                "tokens": args.tokens,
                "open_positions": positions,
                "seconds": setup_s,
            },
            "ticks": ticks | {"open_positions_after": open_after_ticks},
            "signals": signals,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
