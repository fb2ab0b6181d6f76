"""A Runtime over paper venues with a manual clock, every event kept: the rig of the exit
cascade tests (sliced against one transition). Agents trade on "paper" (fills at once) or
"slow" (fills 3 ms later, like a live venue)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.errors import Conflict, NotFound, ValidationError
from tradingd.engine.model import EntryCondition, Signal, Tick

from tests.unit.harness import Clock


class CascadeRig:
    def __init__(self, slice_: int | None, **opts: Any) -> None:
        self.clock = Clock()
        self.engine = Engine(self.clock, **opts)
        venues = {
            "paper": PaperVenue(self.engine.price_usd, self.clock),
            "slow": PaperVenue(self.engine.price_usd, self.clock, fill_delay_ms=3),
        }
        self.runtime = Runtime(self.engine, venues, self.clock)  # type: ignore[arg-type]
        self.runtime.cascade_slice = slice_
        self.events: list[ev.Event] = []
        self.runtime.event_subscribers.append(self.events.extend)
        self.errors: list[str] = []
        self.mid = False  # the action ran while the cascade was pending

    def agent(self, aid: str, config: dict[str, Any], venue: str = "paper") -> None:
        cfg = config_from_builtins(config)
        self.runtime.apply(self.engine.create_agent, aid, venue, cfg, "SOL", None, aid)
        self.runtime.apply(self.engine.deposit, aid, "SOL", 10**12)

    def tick(self, token: str, price: float, advance: int = 1000) -> None:
        self.clock.now += advance
        d = 9 if token == SOL_MINT else 6
        self.runtime.push_ticks([Tick(token, price, self.clock.now, decimals=d)])

    def signal(self, sid: str, token: str, advance: int = 1000, **kw: Any) -> None:
        self.clock.now += advance
        self.runtime.submit_signal(
            Signal(
                id=sid,
                token=token,
                received_at=self.clock.now,
                expires_at=self.clock.now + 30_000,
                **kw,
            )
        )

    def limit(self, sid: str, token: str, price: float, advance: int = 1000) -> None:
        self.signal(sid, token, advance, entry=EntryCondition(type="limit", price_usd=price))

    def call(self, fn: Callable[..., Any], *a: Any, **k: Any) -> Any:
        try:
            return self.runtime.apply(fn, *a, **k)
        except (Conflict, NotFound, ValidationError) as exc:
            self.errors.append(f"{fn.__name__}:{type(exc).__name__}")
            return None

    @property
    def cascading(self) -> bool:
        return self.runtime.cascading

    def positions_of(self, aid: str) -> list[Any]:
        return sorted(
            (p for p in self.engine.positions.values() if p.agent_id == aid), key=lambda p: p.seq
        )
