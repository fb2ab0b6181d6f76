"""One owner per agent: everything the engine keeps about an agent lives in its `AgentBook`,
created, restored and deleted as a whole, so nothing of a deleted agent outlives it (an agent
re-created with the same id starts empty). `BookView` shows one part of every book as a
read-only mapping by agent id (`engine.agents`, `engine.trades`, ...) for readers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from .exposure import Exposure
from .lifecycle import PositionStatus
from .model import Agent, Balance, Position, RestingEntry, Trade

V = TypeVar("V")


class AgentBook:
    """An agent and all it owns.

    - `agent`: the Agent record (config, status, performance).
    - `balances`: asset -> Balance, atomic units of the asset; the quote account always exists.
    - `positions`: position id -> Position, live and the recently closed ones kept in memory.
    - `live`: position id -> Position not closed, in opening order.
    - `exposure`: positions not closed and quote committed per token (see exposure.py).
    - `closed_ids`: ids of the closed positions still in `positions`, oldest first.
    - `trades`: the agent's recent trades, oldest first (the rest is in Postgres).
    - `entries`: entry id -> RestingEntry, the agent's buys resting, in arrival order."""

    __slots__ = (
        "agent",
        "balances",
        "positions",
        "live",
        "exposure",
        "closed_ids",
        "trades",
        "entries",
    )

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.balances: dict[str, Balance] = {
            agent.quote: Balance(asset=agent.quote, decimals=agent.quote_decimals)
        }
        self.positions: dict[str, Position] = {}
        self.live: dict[str, Position] = {}
        self.exposure = Exposure()
        self.closed_ids: deque[str] = deque()
        self.trades: list[Trade] = []
        self.entries: dict[str, RestingEntry] = {}

    def add_position(self, p: Position) -> None:
        """Own `p`: in `positions`, and in `live` unless it is closed."""
        self.positions[p.id] = p
        if p.status != PositionStatus.CLOSED:
            self.live[p.id] = p

    def drop_position(self, position_id: str) -> None:
        """Forget a position entirely (an entry that failed, a closed one past the bound)."""
        self.positions.pop(position_id, None)
        self.live.pop(position_id, None)


class BookView(Mapping[str, V]):
    """A read-only mapping agent id -> one part of that agent's book (`part(book)`). Live: it
    always reflects the books as they are now; O(1) lookups."""

    __slots__ = ("_books", "_part")

    def __init__(self, books: Mapping[str, AgentBook], part: Callable[[AgentBook], V]) -> None:
        self._books = books
        self._part = part

    def __getitem__(self, agent_id: str) -> V:
        return self._part(self._books[agent_id])

    def __iter__(self) -> Iterator[str]:
        return iter(self._books)

    def __len__(self) -> int:
        return len(self._books)

    def __repr__(self) -> str:
        return repr(dict(self.items()))
