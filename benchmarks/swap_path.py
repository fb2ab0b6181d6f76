"""Signal-to-send latency of the Jupiter venue: from submitting a buy signal to the real Engine +
Runtime + JupiterVenue until the fake Solana RPC's sendTransaction handler runs, with 1 and 20
eligible agents (all 20 on ONE wallet), against zero-latency fakes in ANOTHER process.

The fakes run as `python -m tests.fakes.solana_chain --port-file PATH` (one process per phase,
127.0.0.1, no delays, status walk "confirmed" on the first poll), steered over POST /control, so
their work (building a transaction, verifying a signature) is not on the loop under test. The
receive stamp is the fake's `time.monotonic_ns()` when its sendTransaction handler runs; the start
stamp is ours, taken just before `submit_signal` (CLOCK_MONOTONIC is system-wide on Linux, so
the two compare). The fake also stamps each Jupiter handler run and when each send's HTTP request
came in: `our_time` = total minus that server time of the quote, the swap and the send.

The venue is built as adapters/app/live_venues.py builds it (one aiohttp session per host, the
memory store: the journal applies Engine.on_swap_submitted, nothing is written to disk), on
uvloop as in `tradingd run`. Each step is also timed alone: quote call, swap call,
deserialize+sign, send call, and a bare aiohttp POST round trip to the same fake (http_rtt).

    .venv/bin/python benchmarks/swap_path.py [--json PATH] [--rounds N] [--budget-s S]

Figures are microseconds. For K agents, `p*_us` is the time until the LAST of the K swaps of a
signal reached the fake RPC (`first_*` the first). Each phase is bounded by --rounds and
--budget-s."""

from __future__ import annotations

import argparse
import base64
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from _fake_process import fake_process
from _stats import add_json_arg, percentiles, run_loop, write_json
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tradingd.adapters.app.runtime import Runtime  # noqa: E402
from tradingd.adapters.app.venue_settings import JupiterVenueSettings  # noqa: E402
from tradingd.adapters.solana.rpc import SolanaRpc  # noqa: E402
from tradingd.adapters.venues.breaker import CircuitBreaker  # noqa: E402
from tradingd.adapters.venues.jupiter.client import JupiterClient  # noqa: E402
from tradingd.adapters.venues.jupiter.landing import Lander, LandingTimings  # noqa: E402
from tradingd.adapters.venues.jupiter.venue import JupiterVenue  # noqa: E402
from tradingd.adapters.venues.wallet_gate import WalletGate  # noqa: E402
from tradingd.engine.assets import SOL_MINT  # noqa: E402
from tradingd.engine.config import config_from_builtins  # noqa: E402
from tradingd.engine.core import Engine  # noqa: E402
from tradingd.engine.model import Signal, SwapSubmission, Tick  # noqa: E402

TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a"
BUY_LAMPORTS = 10_000_000  # 0.01 SOL a buy
DEPOSIT = 1_000 * 10**9  # per agent
WAIT_S = 10.0
STEP_SAMPLES = 2_000
CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=30)
AGENT_CONFIG = {
    "sizing": {"mode": "fixed", "amount": str(BUY_LAMPORTS)},
    "limits": {"max_open_positions": 100_000, "max_positions_per_token": 1000},
    "stop_loss": {"enabled": False},
}


class FakeChain:
    """The fake chain process: its URLs and the control calls the benchmark needs."""

    def __init__(self, urls: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.rpc_url, self.jupiter_url = urls["rpc_url"], urls["jupiter_url"]
        self.control_url = urls["control_url"]
        self.session = session

    async def control(self, doc: dict[str, Any]) -> dict[str, Any]:
        """POST /control (fund, rates, status_walk, ...); returns the fake's state."""
        async with self.session.post(self.control_url, json=doc, timeout=CONTROL_TIMEOUT) as r:
            r.raise_for_status()
            return await r.json()

    async def state(self) -> dict[str, Any]:
        """GET /control/state: sends, received_ns, send_request_ns, jupiter_spans, ..."""
        async with self.session.get(self.control_url + "/state", timeout=CONTROL_TIMEOUT) as r:
            r.raise_for_status()
            return await r.json()


@contextlib.asynccontextmanager
async def fake_chain_process() -> AsyncIterator[FakeChain]:
    """The fake chain process (`python -m tests.fakes.solana_chain`), steered over /control."""
    async with fake_process("tests.fakes.solana_chain", "swap_path") as urls:
        async with aiohttp.ClientSession() as session:
            yield FakeChain(urls, session)


class Clock:
    """Engine time, epoch ms: moved on by hand so prices never go stale mid-run."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


class Journal:
    """The daemon's journal on the memory store: apply on_swap_submitted, nothing to flush."""

    def __init__(self, engine: Engine, runtime: Runtime) -> None:
        self.engine, self.runtime = engine, runtime

    async def swap_submitted(self, order_id: str, swap: SwapSubmission) -> None:
        self.runtime.apply(self.engine.on_swap_submitted, order_id, swap)


class Path_:
    """Engine + Runtime + JupiterVenue with `agents` agents on one wallet, talking to the fake
    chain process; `starts` holds our time.monotonic_ns() stamp of each timed signal."""

    def __init__(self, fake: FakeChain, sessions: list[aiohttp.ClientSession], agents: int):
        self.fake = fake
        self.starts: list[int] = []
        self.wallet = Keypair()
        self.clock = Clock()
        self.engine = Engine(self.clock)
        self.runtime = Runtime(self.engine, {}, self.clock)
        cfg = JupiterVenueSettings(
            enabled=True, url=fake.jupiter_url + "/swap/v1", priority_fee=0,
            fee_reserve_lamports=10_000, confirm_poll_ms=10, rebroadcast_ms=2_000,
        )  # fmt: skip
        jup_session, rpc_session = sessions
        self.rpc = SolanaRpc(
            fake.rpc_url, rpc_session, timeout_s=5.0, commitment="confirmed",
            breaker=CircuitBreaker("solana_rpc", failure_threshold=5, reset_after_s=30),
        )  # fmt: skip
        self.jupiter = JupiterClient(
            cfg.url, jup_session, api_key=None, timeout_s=5.0,
            breaker=CircuitBreaker("jupiter", failure_threshold=5, reset_after_s=30),
        )  # fmt: skip
        gate = WalletGate({"w1": self.wallet}.get, lambda _wid: str(self.wallet.pubkey()))
        self.steps: dict[str, list[float]] = {}
        self.venue = JupiterVenue(
            jupiter=self.jupiter,
            rpc=self.rpc,
            lander=Lander(
                self.rpc,
                LandingTimings(cfg.confirm_poll_ms, cfg.rebroadcast_ms, cfg.receipt_polls),
                commitment="confirmed",
                skip_preflight=True,
            ),  # fmt: skip
            settings=cfg,
            wallets=gate,
            journal=Journal(self.engine, self.runtime),
            agent_of=self.engine.agents.get,
            price_of=self.engine.price_usd,
            clock=self.clock,
            alert=lambda *_: None,
            observe_step=lambda step, s: self.steps.setdefault(step, []).append(s),
        )
        self.runtime.venues["jupiter"] = self.venue
        config = config_from_builtins(AGENT_CONFIG)
        for i in range(agents):
            agent = self.runtime.apply(
                self.engine.create_agent, f"a{i}", "jupiter", config, "SOL", "w1"
            )
            self.runtime.apply(self.engine.deposit, agent.id, "SOL", DEPOSIT)
        self.runtime.apply(self.engine.set_wallet_unlocked, "w1", True)
        self.n = agents
        self.rounds = 0

    async def setup(self) -> None:
        """Fund the wallet, set the SOL->token rate and land "confirmed" on the first poll."""
        await self.fake.control({
            "fund": {"owner": str(self.wallet.pubkey()), "lamports": DEPOSIT * (self.n + 1)},
            "rates": [[SOL_MINT, TOKEN, "1500"]],
            "status_walk": ["confirmed"],
        })  # fmt: skip

    def tick(self) -> None:
        now = self.clock()
        self.runtime.push_ticks([Tick(SOL_MINT, 150.0, now), Tick(TOKEN, 0.0001, now, decimals=6)])

    async def one_signal(self, *, timed: bool = True) -> None:
        """Submit one buy signal and wait until its orders are done; raises RuntimeError if
        they are still in flight after WAIT_S."""
        self.rounds += 1
        self.clock.now += 1_000
        self.tick()
        now = self.clock()
        signal = Signal(id=f"s{self.rounds}", token=TOKEN, side="buy", strength=5,
                        received_at=now, expires_at=now + 30_000, decimals=6)  # fmt: skip
        started = time.monotonic_ns()
        self.runtime.submit_signal(signal)
        if timed:
            self.starts.append(started)
        if not await self.runtime.wait_orders(WAIT_S):
            raise RuntimeError("orders still in flight")


def per_signal(p: Path_, state: dict[str, Any]) -> dict[str, list[float]]:
    """Seconds per timed signal, from the fake's stamps: `first`/`last` send received, and for
    one agent `server` (the fake's handler time of the quote, the swap and the send up to its
    stamp) and `ours` (last minus server). Raises RuntimeError on a signal without K sends."""
    received = sorted(state["received_ns"].items(), key=lambda kv: kv[1])
    spans = sorted(state["jupiter_spans"], key=lambda s: s[1])
    out: dict[str, list[float]] = {"first": [], "last": [], "server": [], "ours": []}
    bounds = [*p.starts, 2**63]
    for start, end in zip(bounds, bounds[1:], strict=False):
        mine = [(sig, ns) for sig, ns in received if start <= ns < end]
        if len(mine) != p.n:
            raise RuntimeError(f"{len(mine)} sends for {p.n} agents")
        out["first"].append((mine[0][1] - start) / 1e9)
        last = mine[-1][1]
        out["last"].append((last - start) / 1e9)
        if p.n == 1:
            sig = mine[0][0]
            server = sum(e - b for _, b, e in spans if start <= b < last)
            server += last - state["send_request_ns"][sig]
            out["server"].append(server / 1e9)
            out["ours"].append((last - start - server) / 1e9)
    return out


async def timed(samples: list[float], call: Callable[[], Awaitable[Any]]) -> Any:
    started = time.perf_counter()
    result = await call()
    samples.append(time.perf_counter() - started)
    return result


async def steps_alone(
    p: Path_, rtt_session: aiohttp.ClientSession, rounds: int, budget_s: float
) -> dict[str, list[float]]:
    """Each step of the swap path on its own, plus a bare aiohttp POST to the fake RPC over
    `rtt_session` (the RPC client's own session: same pool, same keep-alive)."""
    out: dict[str, list[float]] = {k: [] for k in ("quote", "swap", "sign", "send", "http_rtt")}
    wallet = str(p.wallet.pubkey())
    kp = p.wallet
    body = b'{"jsonrpc":"2.0","id":1,"method":"getBlockHeight"}'
    deadline = time.monotonic() + budget_s
    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        quote = await timed(
            out["quote"],
            lambda: p.jupiter.quote(
                input_mint=SOL_MINT, output_mint=TOKEN, amount=BUY_LAMPORTS, slippage_bps=100
            ),
        )
        build = await timed(
            out["swap"],
            lambda q=quote: p.jupiter.swap(
                q, user_public_key=wallet, prioritization_fee_lamports=0
            ),
        )
        started = time.perf_counter()
        tx = VersionedTransaction.from_bytes(
            base64.b64decode(build.swap_transaction, validate=True)
        )
        raw = bytes(VersionedTransaction(tx.message, [kp]))
        out["sign"].append(time.perf_counter() - started)
        await timed(out["send"], lambda r=raw: p.rpc.send_transaction(r, skip_preflight=True))

        async def rtt() -> None:
            async with rtt_session.post(
                p.fake.rpc_url, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()

        await timed(out["http_rtt"], rtt)
    return out


def us(samples: list[float]) -> dict[str, float]:
    return {k: (v * 1e6 if k not in ("count",) else v) for k, v in percentiles(samples).items()}


async def phase(agents: int, n_rounds: int, budget_s: float, result: dict[str, Any]) -> None:
    """One phase against a fresh fake process: warm-up, timed signals, and with one agent the
    steps alone; fills `result`."""
    async with fake_chain_process() as fake:
        sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=60),
                auto_decompress=True,
            )
            for _ in range(2)
        ]
        try:
            p = Path_(fake, sessions, agents)
            await p.setup()
            for _ in range(3):  # warm the connection pools and caches, untimed
                await p.one_signal(timed=False)
            p.steps.clear()
            deadline = time.monotonic() + budget_s
            for _ in range(n_rounds):
                if time.monotonic() > deadline:
                    break
                await p.one_signal()
            samples = per_signal(p, await fake.state())
            stats, first_stats = us(samples["last"]), us(samples["first"])
            result["agents"][str(agents)] = {
                "p50_us": stats["p50"], "p99_us": stats["p99"], "p999_us": stats["p999"],
                "first_p50_us": first_stats["p50"], "first_p99_us": first_stats["p99"],
                "signals": len(samples["last"]),
            }  # fmt: skip
            if agents != 1:
                return
            ours, server = us(samples["ours"]), us(samples["server"])
            result["our_time_us_p50"], result["our_time_us_p99"] = ours["p50"], ours["p99"]
            result["our_time_us_p999"] = ours["p999"]
            result["server_us_p50"], result["server_us_p99"] = server["p50"], server["p99"]
            result["in_path_steps_us_p50"] = {k: us(v)["p50"] for k, v in p.steps.items()}
            steps = {
                k: us(v)
                for k, v in (await steps_alone(p, sessions[1], STEP_SAMPLES, budget_s)).items()
            }
            result["sign_us_p50"] = steps["sign"]["p50"]
            result["http_rtt_us_p50"] = steps["http_rtt"]["p50"]
            result["http_rtt_us_p99"] = steps["http_rtt"]["p99"]
            result["steps_us_p50"] = {k: v["p50"] for k, v in steps.items()}
            result["steps_us_p99"] = {k: v["p99"] for k, v in steps.items()}
        finally:
            for s in sessions:
                await s.close()


async def run(rounds: int, budget_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"agents": {}, "wallets": "one wallet for all agents",
                              "fakes": "separate process"}  # fmt: skip
    await phase(1, rounds, budget_s, result)
    await phase(20, max(1, rounds // 4), budget_s, result)
    bound = 3 * result["http_rtt_us_p99"] + 1_000
    result["target"] = {
        "rule": "1 agent: p99 <= 3 * http_rtt_p99 + 1 ms",
        "bound_us": bound,
        "met": result["agents"]["1"]["p99_us"] <= bound,
        "met_without_fake_time": result["our_time_us_p99"] <= bound,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_json_arg(parser)
    parser.add_argument(
        "--rounds", type=int, default=900, help="signals with 1 agent (at most 990: one token)"
    )
    parser.add_argument("--budget-s", type=float, default=40.0, help="time bound per phase")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, 990))  # positions per token are capped at 1000
    result = run_loop(run(rounds, args.budget_s))
    for k, v in result["agents"].items():
        print(f"{k:>2} agent(s): p50 {v['p50_us']:8.0f} us  p99 {v['p99_us']:8.0f} us  "
              f"p99.9 {v['p999_us']:8.0f} us  ({v['signals']} signals)")  # fmt: skip
    print(f" 1 agent, fake's handler time removed: p50 {result['our_time_us_p50']:8.0f} us  "
          f"p99 {result['our_time_us_p99']:8.0f} us  (fake: p50 {result['server_us_p50']:.0f} "
          f"p99 {result['server_us_p99']:.0f} us)")  # fmt: skip
    print("steps alone, p50/p99 us:",
          {k: (round(v), round(result["steps_us_p99"][k])) for k, v in result["steps_us_p50"].items()})  # fmt: skip
    print("in the path, p50 us:", {k: round(v) for k, v in result["in_path_steps_us_p50"].items()})
    t = result["target"]
    print(f"target {t['rule']}: bound {t['bound_us']:.0f} us -> total p99 "
          f"{'met' if t['met'] else 'NOT met'}; without the fake's time "
          f"{'met' if t['met_without_fake_time'] else 'NOT met'}")  # fmt: skip
    write_json(args.json, result)


if __name__ == "__main__":
    main()
