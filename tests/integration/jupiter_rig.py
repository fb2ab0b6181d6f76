"""A real Engine + Runtime + JupiterVenue against the fake Jupiter and fake Solana RPC: what the
venue tests drive. The journal applies Engine.on_swap_submitted (as the daemon does) and notes
how many transactions the fake RPC had received at that moment (persist-before-send)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction

import aiohttp
from solders.keypair import Keypair
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.app.venue_settings import JupiterVenueSettings
from tradingd.adapters.solana.rpc import SolanaRpc
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.adapters.venues.jupiter.client import JupiterClient
from tradingd.adapters.venues.jupiter.landing import Lander, LandingTimings
from tradingd.adapters.venues.jupiter.venue import JupiterVenue
from tradingd.adapters.venues.wallet_gate import WalletGate
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal, SwapSubmission, Tick

from tests.fakes.solana_chain import FakeChain, SolanaStack, solana_stack

TOKEN = "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a"
SOL_USD = 150.0
TOKEN_USD = 0.0001
# 1 lamport buys 1,500 token atomic units (6 decimals): 1 SOL = 1.5 M tokens at the prices above.
TOKENS_PER_LAMPORT = Fraction(1500)
WALLET_LAMPORTS = 10 * 10**9


class ManualClock:
    def __init__(self, start: int = 1_764_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


@dataclass
class Journal:
    engine: Engine
    runtime: Runtime | None = None
    rpc_sends_at_record: list[int] = field(default_factory=list)
    swaps: list[SwapSubmission] = field(default_factory=list)
    stack: SolanaStack | None = None
    fail: bool = False

    async def swap_submitted(self, order_id: str, swap: SwapSubmission) -> None:
        if self.fail:
            raise OSError("store down")
        assert self.runtime is not None and self.stack is not None
        self.rpc_sends_at_record.append(len(self.stack.rpc.sends))
        self.swaps.append(swap)
        self.runtime.apply(self.engine.on_swap_submitted, order_id, swap)


@dataclass
class Rig:
    stack: SolanaStack
    engine: Engine
    runtime: Runtime
    venue: JupiterVenue
    journal: Journal
    wallet: Keypair
    clock: ManualClock
    events: list[ev.Event]
    alerts: list[tuple[str, str, dict[str, object]]]
    unlocked: dict[str, Keypair]
    gate: WalletGate
    agent_id: str = ""

    @property
    def chain(self) -> FakeChain:
        return self.stack.chain

    def sol(self) -> int:
        """The agent's SOL total in the book, lamports."""
        return self.engine.ledger.balance(self.agent_id, "SOL").total

    def buy(self, signal_id: str = "s1", expires_in_ms: int = 30_000) -> None:
        now = self.clock()
        self.runtime.submit_signal(
            Signal(id=signal_id, token=TOKEN, side="buy", strength=5, received_at=now,
                   expires_at=now + expires_in_ms, decimals=6)
        )  # fmt: skip

    def sell(self, signal_id: str = "x1") -> None:
        now = self.clock()
        self.runtime.submit_signal(
            Signal(id=signal_id, token=TOKEN, side="sell", strength=5, received_at=now,
                   expires_at=now + 30_000, decimals=6)
        )  # fmt: skip

    async def settle(self, timeout_s: float = 15.0) -> None:
        assert await self.runtime.wait_orders(timeout_s), "orders still in flight"

    def failures(self) -> list[ev.OrderFailed]:
        return [e for e in self.events if isinstance(e, ev.OrderFailed)]

    def fills(self) -> list[ev.OrderFilled]:
        return [e for e in self.events if isinstance(e, ev.OrderFilled)]

    def quotes(self) -> list[dict[str, str]]:
        return [dict(r.query) for r in self.stack.jupiter.requests if r.path.endswith("/quote")]


@contextlib.asynccontextmanager
async def jupiter_rig(
    *, config: dict | None = None, deposit: int = 2 * 10**9, **settings: object
) -> AsyncIterator[Rig]:
    """An unlocked wallet funded with WALLET_LAMPORTS on the fake chain, one jupiter agent
    allocated `deposit` lamports, prices for the token and SOL, and the fake Jupiter's rates."""
    opts: dict[str, object] = dict(
        enabled=True, priority_fee=0, confirm_poll_ms=10, rebroadcast_ms=40, receipt_polls=5,
        max_buy_attempts=3, max_exit_attempts=4,
    )  # fmt: skip
    opts.update(settings)
    async with solana_stack() as stack, aiohttp.ClientSession() as session:
        cfg = JupiterVenueSettings(url=stack.jupiter_url + "/swap/v1", **opts)  # type: ignore[arg-type]
        stack.jupiter.rates[(SOL_MINT, TOKEN)] = TOKENS_PER_LAMPORT
        stack.jupiter.rates[(TOKEN, SOL_MINT)] = 1 / TOKENS_PER_LAMPORT
        wallet = Keypair()
        stack.chain.fund(str(wallet.pubkey()), lamports=WALLET_LAMPORTS)
        clock = ManualClock()
        engine = Engine(clock)
        runtime = Runtime(engine, {}, clock)
        events: list[ev.Event] = []
        runtime.event_subscribers.append(events.extend)
        alerts: list[tuple[str, str, dict[str, object]]] = []
        unlocked = {"w1": wallet}
        gate = WalletGate(unlocked.get, lambda _wid: str(wallet.pubkey()))
        journal = Journal(engine, runtime, stack=stack)
        rpc = SolanaRpc(stack.rpc_url, session, timeout_s=2.0,
                        breaker=CircuitBreaker("rpc", failure_threshold=50))  # fmt: skip
        venue = JupiterVenue(
            jupiter=JupiterClient(cfg.url, session, api_key=None, timeout_s=2.0),
            rpc=rpc,
            lander=Lander(
                rpc,
                LandingTimings(cfg.confirm_poll_ms, cfg.rebroadcast_ms, cfg.receipt_polls),
                commitment="confirmed",
                skip_preflight=True,
            ),  # fmt: skip
            settings=cfg,
            wallets=gate,
            journal=journal,
            agent_of=engine.agents.get,
            price_of=engine.price_usd,
            clock=clock,
            alert=lambda code, msg, details: alerts.append((code, msg, details)),
        )
        runtime.venues["jupiter"] = venue
        agent_config = config_from_builtins(
            config or {"sizing": {"mode": "fixed", "amount": "500000000"}}
        )
        agent = runtime.apply(engine.create_agent, "live", "jupiter", agent_config, "SOL", "w1")
        runtime.apply(engine.deposit, agent.id, "SOL", deposit)
        runtime.apply(engine.set_wallet_unlocked, "w1", True)
        runtime.push_ticks(
            [Tick(SOL_MINT, SOL_USD, clock()), Tick(TOKEN, TOKEN_USD, clock(), decimals=6)]
        )
        yield Rig(stack, engine, runtime, venue, journal, wallet, clock, events, alerts,
                  unlocked, gate, agent.id)  # fmt: skip
        await runtime.wait_orders(5.0)
        for task in list(runtime.in_flight.values()):
            task.cancel()
