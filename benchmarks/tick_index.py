"""Per-tick cost of exit detection: the per-token trigger index against the naive scan.

One token, N open positions (N = 10, 1,000, 10,000, 100,000) spread over agents with a mix of
trailing / fixed / zones / exponential stops and a take-profit ladder, opened through the
public Engine API at prices along a random walk. Then 100,000 ticks of a quiet random walk in
which few exits trigger. Each tick is timed around `Engine.on_tick` only (fills happen outside
the timed region, identically for both). The naive scan is timed on a prefix of the same ticks
when the full run would not fit the time budget (never fewer than 1,000 ticks), and both must
emit byte-identical events over the common prefix, or the benchmark fails.

With `--case resting`: per-tick cost of resting entries (issue 15) beside exits. One token, N
open positions (as above, their agents taking only "position" signals) plus N resting limit and
stop buys on the same token, of other agents (10 per signal type, at most 1,000 each), 1 % of
them 2-25 % from the price (the walk crosses a few of them) and the rest 50-87 % below or 2-7x
above it, none expiring during the run. It is built once through the public Engine API, then
restored from its snapshot into three engines that see the same ticks: `indexed` (the exit and
entry indexes), `naive` (both naive scans) and `naive_entries` (the exit index, the entries'
naive scan: what the entry index alone saves). Each naive engine is timed within the budget but
on at least `--naive-min-ticks` ticks; all three must emit byte-identical events over their
common prefix of ticks, or the benchmark fails.

    python benchmarks/tick_index.py [--json PATH] [--sizes 10,1000] [--ticks 100000]
    python benchmarks/tick_index.py --case resting [--json PATH] [--sizes 10,100000]
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
from tradingd.engine.entry_index import NaiveEntries  # noqa: E402
from tradingd.engine.model import EntryCondition, Signal, Tick  # noqa: E402
from tradingd.engine.snapshot import EngineSnapshot, capture, restore  # noqa: E402

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


ENTRY_GROUP = 10  # entry agents taking one signal type: each resting signal rests 10 entries
ENTRIES_PER_AGENT = 1000
NEAR_SHARE = 0.01  # entries 2-25 % from the price; the others are out of the walk's reach
HOUR_MS = 3600 * 1000
ENTRY_ENDED = b'{"event":"EntryEnded"'
TRIGGERED = b'"outcome":"triggered"'


def settle(engine: Engine, clock: Clock, log: list[bytes] | None) -> None:
    settle_paper(
        engine, clock.now, None if log is None else lambda es: log.extend(map(_enc.encode, es))
    )


def build(
    n: int, exit_index: str, seed: int, signal_type: str = "", max_resting_entries: int = 100_000
) -> tuple[Engine, Clock, float]:
    """N open positions on TOKEN; with a `signal_type`, their agents take only signals of it."""
    clock = Clock()
    engine = Engine(
        clock,
        exit_index=exit_index,  # type: ignore[arg-type]
        max_price_age_ms=10**12,
        max_resting_entries=max_resting_entries,
    )
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
            if signal_type:
                full["signals"] = {"types": [signal_type]}
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
            Signal(
                id=f"s{k}",
                token=TOKEN,
                type=signal_type,
                received_at=clock.now,
                expires_at=clock.now + 30_000,
            )
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


def build_resting(n: int, seed: int) -> tuple[bytes, int, float]:
    """N open positions plus N resting buys on TOKEN (see the module's doc): the snapshot in
    its JSON form (restore keeps the objects it is given, so each engine decodes its own),
    its clock time and the last price."""
    engine, clock, price = build(
        n, "indexed", seed, signal_type="position", max_resting_entries=n + ENTRY_GROUP
    )
    groups = max(1, math.ceil(n / (ENTRY_GROUP * ENTRIES_PER_AGENT)))
    per_agent = math.ceil(n / (groups * ENTRY_GROUP))
    for g in range(groups):
        for k in range(ENTRY_GROUP):
            cfg = {
                "signals": {"types": [f"entry{g}"]},
                "sizing": {"mode": "fixed", "amount": "1000000"},
                "limits": {"max_open_positions": 1000, "max_positions_per_token": 1000},
                "execution": {"slippage_bps": 0, "fee_bps": 0},
                "stop_loss": {"mode": "fixed", "default_pct": -50},
            }
            a = engine.create_agent(
                f"e{g}-{k}", "paper", config_from_builtins(cfg), agent_id=f"e{g:03d}{k}"
            )
            engine.deposit(a.id, "SOL", per_agent * 1_000_000)
    rng = random.Random(seed + 2)
    i = 0
    while len(engine.entries) < n:
        clock.now += 1
        near = rng.random() < NEAR_SHARE
        distance = rng.uniform(0.02, 0.25) if near else rng.uniform(0.7, 2.0)  # log of the ratio
        kind = rng.choice(["limit", "stop"])
        entry_price = price * math.exp(-distance if kind == "limit" else distance)
        engine.on_signal(
            Signal(
                id=f"e{i}",
                token=TOKEN,
                type=f"entry{i % groups}",
                received_at=clock.now,
                expires_at=clock.now + rng.randint(12 * HOUR_MS, 23 * HOUR_MS),
                entry=EntryCondition(type=kind, price_usd=entry_price),  # type: ignore[arg-type]
            )
        )
        i += 1
    settle(engine, clock, None)
    if engine.orders or len(engine.entries) != n:
        raise SystemExit(f"FAIL: built {len(engine.entries)} resting entries, not {n}")
    return msgspec.json.encode(capture(engine)), clock.now, price


def restored(wire: bytes, now: int, variant: str, n: int) -> tuple[Engine, Clock]:
    """A fresh engine of `variant` (indexed, naive, naive_entries) restored from the snapshot
    `wire` (JSON)."""
    clock = Clock()
    clock.now = now
    engine = Engine(
        clock,
        exit_index="naive" if variant == "naive" else "indexed",
        max_price_age_ms=10**12,
        max_resting_entries=n + ENTRY_GROUP,
    )
    if variant == "naive_entries":  # the exit index, the entries' oracle scan
        engine.entry_index = NaiveEntries()
    restore(engine, msgspec.json.decode(wire, type=EngineSnapshot))
    return engine, clock


def measure_resting(
    n: int, ticks: int, naive_budget_s: float, naive_min_ticks: int, seed: int
) -> dict[str, float]:
    wire, now, start = build_resting(n, seed)
    snap = msgspec.json.decode(wire, type=EngineSnapshot)
    runs: dict[str, tuple[list[int], list[bytes], list[int]]] = {}
    left = 0
    for variant in ("indexed", "naive", "naive_entries"):
        engine, clock = restored(wire, now, variant, n)
        budget = float("inf") if variant == "indexed" else naive_budget_s
        floor = ticks if variant == "indexed" else naive_min_ticks
        runs[variant] = run_ticks(engine, clock, start, ticks, seed + 1, budget, floor)
        if variant == "indexed":
            left = len(engine.entries)
        del engine
    idx_samples, idx_log, idx_bounds = runs["indexed"]
    for variant in ("naive", "naive_entries"):
        samples, log, _ = runs[variant]
        # The same snapshot, ticks and fills: their events must match byte for byte.
        if idx_log[: idx_bounds[len(samples) - 1]] != log:
            raise SystemExit(f"FAIL: index and {variant} emitted different events at N={n}")
    common = min(len(runs["naive"][0]), len(runs["naive_entries"][0]))
    prefix = idx_log[: idx_bounds[common - 1]]

    def triggered_in(log: list[bytes]) -> int:
        return sum(1 for e in log if e.startswith(ENTRY_ENDED) and TRIGGERED in e)

    triggered = triggered_in(idx_log)
    out: dict[str, float] = {
        "open_positions": sum(1 for p in snap.positions if p.status == "open"),
        "resting_entries": len(snap.entries),
        "resting_entries_after": left,
        "entries_triggered": triggered,
        "entries_triggered_in_common_prefix": triggered_in(prefix),
        "exits_in_common_prefix": sum(1 for e in prefix if b'"ExitTriggered"' in e),
        "ticks_indexed": len(idx_samples),
    }
    for variant, (samples, _, _) in runs.items():
        stats = percentiles(samples)
        if variant != "indexed":
            out[f"ticks_{variant}"] = len(samples)
        for point in ("p50", "p99", "p999"):
            out[f"{variant}_ns_{point}"] = stats[point]
    return out


def main_resting(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, float]] = {}
    started = time.monotonic()
    print(
        f"{'N':>7} {'idx p50':>9} {'idx p99':>9} {'idx p99.9':>10} {'naive p50':>10} "
        f"{'naive p99':>10} {'naive p99.9':>11} {'nv-ent p50':>10} {'nv-ent p99':>10} "
        f"{'nv-ent p99.9':>12} {'ticks(naive)':>12} {'crossed':>7} {'vs naive':>9} "
        f"{'vs nv-ent':>9}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure_resting(n, args.ticks, args.naive_budget_s, args.naive_min_ticks, args.seed)
        results[str(n)] = r
        idx = r["indexed_ns_p50"]
        r["speedup_p50_vs_naive"] = r["naive_ns_p50"] / idx
        r["speedup_p50_vs_naive_entries"] = r["naive_entries_ns_p50"] / idx
        print(
            f"{n:>7} {idx:>7.0f}ns {r['indexed_ns_p99']:>7.0f}ns {r['indexed_ns_p999']:>8.0f}ns "
            f"{r['naive_ns_p50']:>8.0f}ns {r['naive_ns_p99']:>8.0f}ns {r['naive_ns_p999']:>9.0f}ns "
            f"{r['naive_entries_ns_p50']:>8.0f}ns {r['naive_entries_ns_p99']:>8.0f}ns "
            f"{r['naive_entries_ns_p999']:>10.0f}ns {r['ticks_naive']:>12} "
            f"{r['entries_triggered']:>7} {r['speedup_p50_vs_naive']:>8.0f}x "
            f"{r['speedup_p50_vs_naive_entries']:>8.0f}x",
            flush=True,
        )
    sizes = sorted(results, key=int)
    summary: dict[str, float] = {}
    if len(sizes) > 1:
        lo, hi = results[sizes[0]], results[sizes[-1]]
        summary["index_p50_growth"] = hi["indexed_ns_p50"] / lo["indexed_ns_p50"]
        print(
            f"index p50 growth {sizes[0]} -> {sizes[-1]} entries (+ as many positions): "
            f"{summary['index_p50_growth']:.2f}x (target <= 3x); speed-up at {sizes[-1]}: "
            f"{hi['speedup_p50_vs_naive']:.0f}x vs the naive engine, "
            f"{hi['speedup_p50_vs_naive_entries']:.0f}x vs the entries' scan alone "
            f"(target >= 100x); total {time.monotonic() - started:.0f}s"
        )
    write_json(args.json, {"resting": results, "summary": summary})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_json_arg(parser)
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--naive-budget-s", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--case",
        choices=["exits", "resting"],
        default="exits",
        help="exits: open positions only; resting: N resting entries plus N open positions",
    )
    parser.add_argument(
        "--naive-min-ticks",
        type=int,
        default=1000,
        help="(resting) ticks each naive engine runs at least, whatever the budget",
    )
    args = parser.parse_args()
    if args.case == "resting":
        return main_resting(args)
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
