"""What a channel is asked to send, and the runtime subscriber that picks it out of the engine's
events. The subscriber runs inside every transition's flush: per event one dict lookup on its
type, and for the few it keeps a handful of O(1) name lookups and a deque append per channel. No
formatting, encoding or awaiting here: that is the sender task's work (delivery.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from msgspec import Struct
from tradingd.adapters import units
from tradingd.adapters.notify.config import EventKind
from tradingd.engine import events as ev
from tradingd.engine.assets import QUOTE_SYMBOLS
from tradingd.engine.state import EngineState

BREAKER_PREFIX: Final = "breaker_"
_MINT_SYMBOLS: Final = {mint: symbol for symbol, mint in QUOTE_SYMBOLS.items()}


class Names(Struct, frozen=True, gc=False):
    """Names and decimals as they were when the event happened (an agent renamed or a position
    forgotten later does not change a queued message): the agent's name, its quote (a symbol or
    a mint) and the token's mint, symbol if known, decimals. Labels are made by the sender."""

    agent: str
    quote: str
    quote_decimals: int
    token: str = ""
    token_decimals: int = 0
    symbol: str | None = None

    @property
    def quote_label(self) -> str:
        return asset_label(self.quote)

    @property
    def token_label(self) -> str:
        return self.symbol or asset_label(self.token)


class AgentDay(Struct, frozen=True, gc=False):
    """One agent's line in a daily summary: quote atomic amounts with their decimals."""

    agent_id: str
    name: str
    quote: str
    quote_decimals: int
    day_realized_pnl: int
    realized_pnl: int
    trades: int
    wins: int
    losses: int
    max_drawdown_pct: float
    open_positions: int


class DailySummary(Struct, frozen=True):
    """Every agent's performance at the end of UTC day `day` (ISO date)."""

    day: str
    agents: list[AgentDay]
    agents_total: int  # agents listed may be fewer (MAX_SUMMARY_AGENTS)


class Notice(Struct, frozen=True, gc=False):
    """One notification: its kind, the engine event (None for a summary), names, a summary."""

    kind: EventKind
    event: ev.Event | None = None
    names: Names | None = None
    summary: DailySummary | None = None


Offer = Callable[[Notice], None]


class NoticeRouter:
    """The runtime subscriber: each kept event goes to the `offer` of every channel that asked
    for its kind. A breaker alert goes to channels with `breakers` or `alerts` (once each)."""

    def __init__(
        self,
        engine: EngineState,
        routes: dict[EventKind, Sequence[Offer]],
        symbols: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        # mint -> symbol from the config's [tokens]: the label when the signal named none
        self.symbols: Mapping[str, str] = symbols or {}
        self.route(routes)

    def route(self, routes: dict[EventKind, Sequence[Offer]]) -> None:
        """Replace the channels each kind goes to (a channel added or removed while running):
        the subscriber stays the same object, and its per-event work the same tuple walks."""
        self.fills = tuple(routes.get("fills", ()))
        self.exits = tuple(routes.get("exits", ()))
        self.alerts = tuple(routes.get("alerts", ()))
        breakers = list(routes.get("breakers", ()))
        self.breakers = tuple(breakers + [o for o in self.alerts if o not in breakers])

    def __call__(self, events: list[ev.Event]) -> None:
        for event in events:
            t = type(event)
            if t is ev.OrderFilled:
                if self.fills:
                    trade = event.trade  # type: ignore[attr-defined]
                    names = self._names(trade.agent_id, trade.token, trade.position_id)
                    notice = Notice("fills", event, names)
                    for offer in self.fills:
                        offer(notice)
            elif t is ev.PositionClosed:
                if self.exits:
                    p = event.position  # type: ignore[attr-defined]
                    names = self._names(p.agent_id, p.token, None, p.symbol, p.decimals)
                    notice = Notice("exits", event, names)
                    for offer in self.exits:
                        offer(notice)
            elif t is ev.Alert:
                breaker = event.code.startswith(BREAKER_PREFIX)  # type: ignore[attr-defined]
                offers = self.breakers if breaker else self.alerts
                if offers:
                    notice = Notice("breakers" if breaker else "alerts", event)
                    for offer in offers:
                        offer(notice)

    def _names(
        self,
        agent_id: str,
        token: str,
        position_id: str | None,
        symbol: str | None = None,
        decimals: int | None = None,
    ) -> Names:
        engine = self.engine
        agent = engine.agents.get(agent_id)
        if decimals is None:
            position = engine.positions.get(position_id) if position_id else None
            if position is not None:
                symbol, decimals = position.symbol, position.decimals
            else:
                decimals = engine.token_decimals(token)
        symbol = symbol or self.symbols.get(token)
        if agent is None:
            return Names(agent_id, "", 0, token, decimals, symbol)
        return Names(agent.name, agent.quote, agent.quote_decimals, token, decimals, symbol)


def asset_label(mint_or_symbol: str) -> str:
    """A quote or token as shown: SOL/USDC/USDT for their mints, a symbol, or a short mint."""
    return _MINT_SYMBOLS.get(mint_or_symbol) or units.short_mint(mint_or_symbol)
