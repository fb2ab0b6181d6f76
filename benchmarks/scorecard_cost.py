"""What signal-provider scorecards cost per fill, and whether they touch the signal path.

1. `update`: the scorecard work of one entry fill (slippage, latency) and of one close (PnL,
   drawdown, the breaker's memory) on a warm Scorecards with 10 sources x 100 agents, in ns per
   fill (batches of 100 calls timed together, so the timer's own cost is amortised), against the
   floor of the same loop doing one dict increment per call.
2. `engine`: one buy signal to K paper agents through the Engine, settled (K entry fills), then
   a sell signal settled (K closes), with the real scorecards and with a no-op stand-in,
   rounds interleaved so machine load hits both alike: p50/p99/p99.9 of the buy's transition
   + fills, in us, and the ratio.
3. `persist`: what the store writes for the cards one fill changes (ScorecardSaved records:
   bytes and encode ns), the per-flush cost the write-through pays.

    .venv/bin/python benchmarks/scorecard_cost.py [--agents K] [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import msgspec
from _stats import add_json_arg, percentiles, write_json
from tradingd.adapters.store.records import ScorecardSaved
from tradingd.adapters.venues.paper import paper_fill
from tradingd.engine.config import SourceBreaker, config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Attribution, Signal, Tick
from tradingd.engine.scorecards import Scorecards

SOL = "So11111111111111111111111111111111111111112"
TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
T0 = 1_764_000_000_000
BREAKER = SourceBreaker(enabled=True, consecutive_losses=1000, max_drawdown_pct=100)


class NoScorecards(Scorecards):
    """The engine's scorecards with every update a no-op: the 'without' of the comparison."""

    def signal_received(self, *args: Any) -> None: ...
    def filtered(self, source: str, reasons: dict[str, str], now: int) -> None: ...
    def accepted(self, agent_id: str, source: str, now: int) -> None: ...
    def execution(self, *args: Any) -> None: ...
    def entry_filled(self, *args: Any) -> None: ...

    def closed(self, *args: Any) -> str:
        return "x"


def bench_update(batches: int) -> dict[str, Any]:
    cards = Scorecards()
    sources = [f"src{i}" for i in range(10)]
    agents = [f"agt{i}" for i in range(100)]
    for s in sources:
        cards.admit(s, None)  # as a signal's receipt does
    bys = [Attribution(signal_id="s", source=s, received_at=T0, price_usd=1.0) for s in sources]
    now = T0
    for i in range(5000):  # warm: every card and bucket exists
        cards.closed(agents[i % 100], bys[i % 10], "SOL", 9, 150.0, i - 2500, 1000, now)
    per_fill, floor = [], []
    counter: dict[tuple[str, str], int] = {}
    gc.disable()
    try:
        for b in range(batches):
            now += 7
            t0 = time.perf_counter_ns()
            for i in range(100):
                a, by = agents[i], bys[(b + i) % 10]
                cards.entry_filled(a, by, 1.01, now)
                cards.closed(a, by, "SOL", 9, 150.0, i * 1000 - 50_000, 60_000, now)
                cards.record_result(a, by.source, BREAKER, i * 1000 - 50_000, 10**10, now)
            t1 = time.perf_counter_ns()
            for i in range(100):
                key = (agents[i], sources[(b + i) % 10])
                counter[key] = counter.get(key, 0) + 1
            t2 = time.perf_counter_ns()
            per_fill.append((t1 - t0) / 100)
            floor.append((t2 - t1) / 100)
    finally:
        gc.enable()
    return {
        "ns_per_fill": percentiles(per_fill),
        "floor_dict_increment_ns": percentiles(floor),
        "ratio_p50": statistics.median(per_fill) / statistics.median(floor),
    }


def _engine(agents: int, null: bool) -> Engine:
    engine = Engine(lambda: T0)
    if null:
        engine.scorecards = NoScorecards()
    cfg = config_from_builtins(
        {
            "sizing": {"mode": "fixed", "amount": "10000000"},
            "limits": {"max_open_positions": 100},
            "stop_loss": {"enabled": False},
            "source_breaker": {"enabled": True, "max_drawdown_pct": 100},  # judged, never trips
        }
    )
    for i in range(agents):
        a = engine.create_agent(f"a{i}", "paper", cfg, "SOL", agent_id=f"a{i}")
        engine.deposit(a.id, "SOL", 10**15)
    engine.on_tick(Tick(SOL, 150.0, T0, decimals=9))
    engine.on_tick(Tick(TOKEN, 1.0, T0, decimals=6))
    engine.drain()
    return engine


def _settle(engine: Engine) -> None:
    while True:
        out = engine.drain()
        if not out.intents:
            return
        for intent in out.intents:
            o = intent.order
            engine.on_fill(paper_fill(o, engine.price_usd(o.token), engine.quote_usd(o.quote), T0))


def bench_engine(agents: int, rounds: int) -> dict[str, Any]:
    engines = {"with": _engine(agents, False), "without": _engine(agents, True)}
    samples: dict[str, list[float]] = {"with": [], "without": []}
    gc.collect()
    for r in range(rounds):
        for name in ("with", "without") if r % 2 else ("without", "with"):
            e = engines[name]
            buy = Signal(
                id=f"b{r}", token=TOKEN, source=f"p{r % 5}", received_at=T0, expires_at=T0 + 1
            )
            t0 = time.perf_counter_ns()
            e.on_signal(buy)
            _settle(e)
            samples[name].append((time.perf_counter_ns() - t0) / 1000)
            sell = Signal(
                id=f"s{r}",
                token=TOKEN,
                side="sell",
                source=f"p{r % 5}",
                received_at=T0,
                expires_at=T0 + 1,
            )
            e.on_signal(sell)
            _settle(e)
    out = {name: percentiles(s) for name, s in samples.items()}
    out["ratio_p50"] = out["with"]["p50"] / out["without"]["p50"]
    out["ratio_p99"] = out["with"]["p99"] / out["without"]["p99"]
    out["agents"] = agents
    return out


def bench_persist(samples: int) -> dict[str, Any]:
    engine = _engine(1, False)
    enc = msgspec.json.Encoder()
    sizes, times = [], []
    for r in range(samples):
        buy = Signal(id=f"b{r}", token=TOKEN, source="p", received_at=T0, expires_at=T0 + 1)
        engine.on_signal(buy)
        _settle(engine)
        engine.scorecards.take_dirty()
        sell = Signal(
            id=f"s{r}", token=TOKEN, side="sell", source="p", received_at=T0, expires_at=T0 + 1
        )
        engine.on_signal(sell)
        _settle(engine)
        t0 = time.perf_counter_ns()
        records = [ScorecardSaved(ts=T0, saved=c) for c in engine.scorecards.take_dirty()]
        size = sum(len(enc.encode(x)) for x in records)
        times.append(time.perf_counter_ns() - t0)
        sizes.append(size)
    return {"bytes_per_close": percentiles(sizes), "take_and_encode_ns": percentiles(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--batches", type=int, default=3000)
    add_json_arg(parser)
    args = parser.parse_args()
    update = bench_update(args.batches)
    u = update["ns_per_fill"]
    f = update["floor_dict_increment_ns"]
    print(
        f"update: {u['p50']:.0f} ns/fill p50, {u['p99']:.0f} p99, {u['p999']:.0f} p99.9 "
        f"(floor: one dict increment {f['p50']:.0f} ns; ratio {update['ratio_p50']:.1f}x)"
    )
    engine = {}
    for k in args.agents:
        res = bench_engine(k, args.rounds)
        engine[str(k)] = res
        w, wo = res["with"], res["without"]
        print(
            f"engine, {k} agent(s): buy + {k} fills {w['p50']:.1f}/{w['p99']:.1f}/"
            f"{w['p999']:.1f} us p50/p99/p99.9 with scorecards, {wo['p50']:.1f}/{wo['p99']:.1f}/"
            f"{wo['p999']:.1f} without: x{res['ratio_p50']:.3f} p50, x{res['ratio_p99']:.3f} p99"
        )
    persist = bench_persist(300)
    p, t = persist["bytes_per_close"], persist["take_and_encode_ns"]
    print(
        f"persist: {p['p50']:.0f} bytes of ScorecardSaved per close (p99 {p['p99']:.0f}), "
        f"taken and encoded in {t['p50'] / 1000:.1f} us p50"
    )
    write_json(args.json, {"update": update, "engine": engine, "persist": persist})


if __name__ == "__main__":
    main()
