"""Drives Engines through their public API with a manual clock and the paper fill function."""

from __future__ import annotations

import math

import msgspec
from tradingd.adapters.venues.paper import PaperRejected, paper_fill
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import AgentConfig, config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.errors import Conflict
from tradingd.engine.events import AnyEvent
from tradingd.engine.model import EntryCondition, Order, RestingEntry, Signal, Tick
from tradingd.engine.snapshot import capture, restore

TOKENS = [
    "DezXAZ8z7PnrnRJjz3wXBoRgixCaNkRZ2cRbBQdfnZ9a",
    "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
    "HBuYRbBCTCqUFFPXSSbPTyTqGyAL2BsLsiTrEhduDD2V",
]
_enc = msgspec.json.Encoder()


class Clock:
    def __init__(self, start: int = 1_764_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


class Harness:
    """One engine plus the orders it has asked for and not yet had settled."""

    def __init__(self, clock: Clock, exit_index: str = "indexed") -> None:
        self.clock = clock
        self.exit_index = exit_index
        self.engine = Engine(clock, exit_index=exit_index)  # type: ignore[arg-type]
        self.pending: list[Order] = []
        self.log: list[bytes] = []
        self.deposits: dict[str, int] = {}
        self.deleted: set[str] = set()  # agent ids deleted (and perhaps created again)
        self.rested: list[str] = []  # ids of the signals posted with an entry condition
        self.restarts_resting = 0  # restarts (restart_engine steps) while buys rested

    def collect(self) -> None:
        out = self.engine.drain()
        self.log.extend(_enc.encode(e) for e in out.events)
        self.pending.extend(i.order for i in out.intents)

    def agent(
        self,
        config: AgentConfig | dict,
        deposit: int = 10 * 10**9,
        quote: str = "SOL",
        agent_id: str | None = None,
    ) -> str:
        cfg = config if isinstance(config, AgentConfig) else config_from_builtins(config)
        agent = self.engine.create_agent("a", "paper", cfg, quote, agent_id=agent_id)
        self.engine.deposit(agent.id, quote, deposit)
        self.deposits[agent.id] = deposit
        self.collect()
        return agent.id

    def delete(self, agent_id: str) -> None:
        """Delete the agent (raises Conflict while it holds positions or orders)."""
        self.engine.delete_agent(agent_id)
        self.deposits.pop(agent_id, None)
        self.deleted.add(agent_id)
        self.collect()

    def restart(self) -> None:
        """Replace the engine by one restored from its snapshot, as recovery does."""
        snap = capture(self.engine)
        self.engine = Engine(self.clock, exit_index=self.exit_index)  # type: ignore[arg-type]
        restore(self.engine, snap)

    def tick(self, token: str, price: float, decimals: int | None = 6) -> None:
        self.engine.on_tick(Tick(token, price, self.clock.now, decimals=decimals))
        self.collect()

    def sol(self, price: float = 150.0) -> None:
        self.tick(SOL_MINT, price, 9)

    def signal(
        self,
        token: str,
        side: str = "buy",
        strength: int = 3,
        type_: str = "t",
        client_id: str | None = None,
        entry: EntryCondition | None = None,
        expires_at: int | None = None,
    ):
        now = self.clock.now
        signal_id = f"sig{len(self.log)}-{now}"
        record, dup = self.engine.on_signal(
            Signal(
                id=signal_id,
                token=token,
                side=side,
                strength=strength,
                type=type_,  # type: ignore[arg-type]
                received_at=now,
                expires_at=now + 30_000 if expires_at is None else expires_at,
                client_id=client_id,
                entry=entry,
            )
        )
        if entry is not None and not dup:
            self.rested.append(signal_id)
        self.collect()
        return record, dup

    def rest(
        self,
        token: str,
        kind: str,
        price: float,
        expires_in_ms: int = 60_000,
        strength: int = 3,
    ):
        """A buy signal resting as a `kind` ("limit" or "stop") entry at `price` USD, expiring
        `expires_in_ms` after now. Returns (record, duplicate) as `signal` does."""
        return self.signal(
            token,
            strength=strength,
            entry=EntryCondition(type=kind, price_usd=price),  # type: ignore[arg-type]
            expires_at=self.clock.now + expires_in_ms,
        )

    def cancel(self, signal_id: str) -> list[RestingEntry]:
        """Cancel what still rests of the signal (Engine.cancel_resting)."""
        cancelled = self.engine.cancel_resting(signal_id)
        self.collect()
        return cancelled

    def set_status(self, agent_id: str, status: str) -> None:
        """Pause or resume the agent (Engine.set_agent_status)."""
        self.engine.set_agent_status(agent_id, status)  # type: ignore[arg-type]
        self.collect()

    def clock_step(self) -> None:
        self.engine.on_clock()
        self.collect()

    def settle(self, fail: bool = False) -> None:
        """Fill (or fail) every pending order, including orders the fills start."""
        while self.pending:
            order = self.pending.pop(0)
            e = self.engine
            try:
                if fail:
                    raise PaperRejected("injected failure")
                fill = paper_fill(
                    order, e.price_usd(order.token), e.quote_usd(order.quote), self.clock.now
                )
            except PaperRejected as exc:
                e.on_order_failed(order.id, str(exc))
            else:
                e.on_fill(fill)
            self.collect()

    def events(self) -> list:
        dec = msgspec.json.Decoder(AnyEvent)
        return [dec.decode(b) for b in self.log]

    def step(self, prices: dict[str, float], kind: str, a, b) -> bool:
        """Apply one generated action (tests/unit/strategies.py `action`, `resting_action`) to
        the engine: a tick moving `prices[a]` by exp(b) one second later, a buy or sell signal,
        a wait of `a` seconds, settling the in-flight orders, a manual close; a resting buy
        (`rest`: b = (kind, log offset from the price, seconds to expiry)), a tick exactly at
        the price of the `a`-th resting entry (`touch`), a cancel of the
        `a`-th latest signal that rested, pausing or resuming the `a`-th agent, deleting it (refused
        while it holds positions: nothing changes; `b`: then creating it again), or a restart from the snapshot. False for a
        kind it does not know, so a test can interpret its own kinds."""
        if kind in RESTING_KINDS:
            self._resting_step(prices, kind, a, b)
        elif kind == "tick":
            prices[a] = max(prices[a] * math.exp(b), 1e-9)
            self.clock.now += 1000
            self.tick(a, prices[a])
        elif kind == "buy":
            self.signal(a, strength=b)
        elif kind == "sell":
            self.signal(a, side="sell")
        elif kind == "wait":
            self.clock.now += a * 1000
            self.clock_step()
        elif kind == "settle":
            self.settle(fail=a and len(self.log) % 3 == 0)
        elif kind == "close":
            open_ = [p for p in self.engine.positions.values() if p.status == "open"]
            if open_:
                try:
                    self.engine.close_position(open_[a % len(open_)].id, b)
                except Conflict:
                    pass
                self.collect()
        else:
            return False
        return True

    def _resting_step(self, prices: dict[str, float], kind: str, a, b) -> None:
        agents = list(self.engine.agents)
        if kind == "rest":
            entry_kind, offset, expires_s = b
            self.rest(a, entry_kind, prices[a] * math.exp(offset), expires_s * 1000)
        elif kind == "touch":  # a tick exactly at the price of the `a`-th resting entry
            entries = list(self.engine.entries.values())
            if entries:
                entry = entries[a % len(entries)]
                prices[entry.token] = entry.price_usd
                self.clock.now += 1000
                self.tick(entry.token, entry.price_usd)
        elif kind == "cancel":  # the `a`-th latest signal that rested
            if self.rested:
                self.cancel(self.rested[-1 - a % len(self.rested)])
        elif kind in ("pause", "resume") and agents:
            self.set_status(agents[a % len(agents)], "paused" if kind == "pause" else "active")
        elif kind == "delete_agent" and agents:  # b: create it again, same id, config, deposit
            aid = agents[a % len(agents)]
            agent, deposit = self.engine.agents[aid], self.deposits[aid]
            try:
                self.delete(aid)
            except Conflict:  # positions or orders still held: nothing changed
                self.collect()
            else:
                if b:
                    self.agent(agent.config, deposit, agent.quote, agent_id=aid)
        elif kind == "restart_engine":
            self.restarts_resting += bool(self.engine.entries)
            before = capture(self.engine)
            self.restart()
            assert capture(self.engine) == before, "restore(capture(e)) differs from e"


RESTING_KINDS = frozenset(
    {"rest", "touch", "cancel", "pause", "resume", "delete_agent", "restart_engine"}
)
