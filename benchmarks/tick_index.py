"""Per-tick cost of exit detection: the per-token trigger index against the naive scan.

One token, N open positions (N = 10, 1,000, 10,000, 100,000) spread over agents with a mix of
trailing / fixed / zones / exponential stops and a take-profit ladder, opened through the
public Engine API at prices along a random walk. Then 100,000 ticks of a quiet random walk in
which few exits trigger. Each tick is timed around `Engine.on_tick` only (fills happen outside
the timed region, identically for both). The naive scan is timed on a prefix of the same ticks
when the full run would not fit the time budget (never fewer than 1,000 ticks), and both must
emit byte-identical events over the common prefix, or the benchmark fails.

    python benchmarks/tick_index.py [--json PATH] [--sizes 10,1000] [--ticks 100000]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402
from _stats import add_json_arg, percentiles, write_json  # noqa: E402
from tradingd.adapters.venues.paper import settle_paper  # noqa: E402
from tradingd.engine.assets import SOL_MINT  # noqa: E402
from tradingd.engine.config import config_from_builtins  # noqa: E402
from tradingd.engine.core import Engine  # noqa: E402
from tradingd.engine.model import Signal, Tick  # noqa: E402

TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a"
PER_AGENT = 1000  # limits.max_positions_per_token allows at most 1,000 per agent
MIX = [
    {"stop_loss": {"mode": "trailing", "trail_pct": 12, "default_pct": -50}},
    {"stop_loss": {"mode": "fixed", "default_pct": -50}},
    {"stop_loss": {"mode": "zones", "default_pct": -50}},
    {"stop_loss": {"mode": "exponential", "default_pct": -50}},
    {
        "stop_loss": {"mode": "trailing", "trail_pct": 40, "default_pct": -50},
        "take_profit": {
            "enabled": True,
            "levels": [{"gain_pct": 60, "sell_pct": 25}, {"gain_pct": 120, "sell_pct": 25}],
        },
    },
]
_enc = msgspec.json.Encoder()


class Clock:
    now = 1_764_000_000_000

    def __call__(self) -> int:
        return self.now


def settle(engine: Engine, clock: Clock, log: list[bytes] | None) -> None:
    settle_paper(
        engine, clock.now, None if log is None else lambda es: log.extend(map(_enc.encode, es))
    )


def build(n: int, exit_index: str, seed: int) -> tuple[Engine, Clock, float]:
    clock = Clock()
    engine = Engine(clock, exit_index=exit_index, max_price_age_ms=10**12)  # type: ignore[arg-type]
    groups = max(1, math.ceil(n / (PER_AGENT * len(MIX))))
    agents = len(MIX) * groups
    per_agent = math.ceil(n / agents)
    for g in range(groups):
        for i, cfg in enumerate(MIX):
            full = {
                **cfg,
                "sizing": {"mode": "fixed", "amount": "1000000"},
                "limits": {"max_open_positions": per_agent, "max_positions_per_token": per_agent},
                "execution": {"slippage_bps": 0, "fee_bps": 0},
            }
            a = engine.create_agent(
                f"a{g}-{i}", "paper", config_from_builtins(full), agent_id=f"a{g:03d}{i}"
            )
            engine.deposit(a.id, "SOL", per_agent * 1_000_000)
    engine.on_tick(Tick(SOL_MINT, 150.0, clock.now, decimals=9))
    rng = random.Random(seed)
    price = 1.0
    opened = 0
    for k in range(per_agent):
        clock.now += 10
        price *= math.exp(rng.gauss(0, 0.002))
        engine.on_tick(Tick(TOKEN, price, clock.now, decimals=6))
        engine.on_signal(
            Signal(id=f"s{k}", token=TOKEN, received_at=clock.now, expires_at=clock.now + 30_000)
        )
        settle(engine, clock, None)
        opened = sum(1 for p in engine.positions.values() if p.status == "open")
        if opened >= n:
            break
    settle(engine, clock, None)
    return engine, clock, price


def run_ticks(
    engine: Engine,
    clock: Clock,
    start: float,
    count: int,
    seed: int,
    budget_s: float,
    min_ticks: int,
) -> tuple[list[int], list[bytes], list[int]]:
    """Times each tick; returns the samples, the event log, and the log length after each tick."""
    rng = random.Random(seed)
    price = start
    samples: list[int] = []
    log: list[bytes] = []
    bounds: list[int] = []
    perf = time.perf_counter_ns
    deadline = time.monotonic() + budget_s
    on_tick = engine.on_tick
    for i in range(count):
        clock.now += 100
        price *= math.exp(rng.gauss(0, 0.0008))
        tick = Tick(TOKEN, price, clock.now)
        t0 = perf()
        on_tick(tick)
        samples.append(perf() - t0)
        settle(engine, clock, log)
        bounds.append(len(log))
        if i + 1 >= min_ticks and time.monotonic() > deadline:
            break
    return samples, log, bounds


def measure(n: int, ticks: int, naive_budget_s: float, seed: int) -> dict[str, float]:
    engine, clock, start = build(n, "indexed", seed)
    opened = sum(1 for p in engine.positions.values() if p.status == "open")
    idx_samples, idx_log, idx_bounds = run_ticks(
        engine, clock, start, ticks, seed + 1, float("inf"), ticks
    )
    del engine
    engine, clock, start = build(n, "naive", seed)
    naive_samples, naive_log, _ = run_ticks(
        engine, clock, start, ticks, seed + 1, naive_budget_s, 1000
    )
    common = len(naive_samples)
    # Both engines saw the same ticks and the same fills: their events must match byte for byte.
    cut_idx = idx_log[: idx_bounds[common - 1]]
    cut_naive = naive_log
    if cut_idx != cut_naive:
        raise SystemExit(f"FAIL: index and naive scan emitted different events at N={n}")
    exits = sum(1 for e in cut_idx if b'"ExitTriggered"' in e)
    i, nv = percentiles(idx_samples), percentiles(naive_samples)
    return {
        "open_positions": opened,
        "ticks_indexed": len(idx_samples),
        "ticks_naive": common,
        "exits_in_common_prefix": exits,
        "indexed_ns_p50": i["p50"],
        "indexed_ns_p99": i["p99"],
        "indexed_ns_p999": i["p999"],
        "naive_ns_p50": nv["p50"],
        "naive_ns_p99": nv["p99"],
        "naive_ns_p999": nv["p999"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_json_arg(parser)
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--naive-budget-s", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    started = time.monotonic()
    print(
        f"{'N':>8} {'open':>8} {'idx p50':>9} {'idx p99':>9} {'idx p99.9':>10} {'naive p50':>11} {'naive p99':>11} "
        f"{'ticks(naive)':>12} {'exits':>6} {'speedup p50':>11}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure(n, args.ticks, args.naive_budget_s, args.seed)
        results[str(n)] = r
        print(
            f"{n:>8} {r['open_positions']:>8} {r['indexed_ns_p50']:>7.0f}ns {r['indexed_ns_p99']:>7.0f}ns "
            f"{r['indexed_ns_p999']:>8.0f}ns {r['naive_ns_p50']:>9.0f}ns {r['naive_ns_p99']:>9.0f}ns "
            f"{r['ticks_naive']:>12} {r['exits_in_common_prefix']:>6} {r['naive_ns_p50'] / r['indexed_ns_p50']:>10.1f}x",
            flush=True,
        )
    sizes = sorted(results, key=int)
    if len(sizes) > 1:
        lo, hi = results[sizes[0]], results[sizes[-1]]
        print(
            f"index p50 growth {sizes[0]} -> {sizes[-1]} positions: {hi['indexed_ns_p50'] / lo['indexed_ns_p50']:.2f}x; "
            f"total {time.monotonic() - started:.0f}s"
        )
    write_json(args.json, {"positions": results})


if __name__ == "__main__":
    main()
