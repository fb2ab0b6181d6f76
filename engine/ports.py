"""The seams the engine's surroundings plug into: the Protocols a venue, a store and a price feed
implement. The runtime, the daemon and the tests talk to these, never to a concrete adapter, so a
fake implements the whole seam and nobody reaches for `getattr`.

Only engine types cross these seams; amounts are int atomic units, prices USD per whole token,
timestamps epoch milliseconds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from . import events as ev
from .model import Fill, Order, Position, Tick, Trade

if TYPE_CHECKING:
    from .state import SignalRecord

# A component's health as the control port reports it: {"status": "ok" | "down" | "starting"
# | ..., "reason": str, ...} (GET /health `components`).
ComponentHealth = dict[str, object]
# The daemon's health registry: component name ("redis", "postgres", "feeds", "venues") -> its
# health, written by the component's owner, read by /health and the metrics.
HealthRegistry = dict[str, ComponentHealth]


class Venue(Protocol):
    """Where orders execute. `execute` is what the runtime awaits for every order; an in-process
    venue (`in_process` True: paper without a fill delay) is settled synchronously with
    `execute_now` in the loop turn that placed the order. Live venues add `quote(intent)` before
    execution and use `reconcile()` at start-up (DESIGN.md, venue protocol)."""

    @property
    def name(self) -> str:
        """The venue's name, the part of `Order.venue` before any `:market`."""
        ...

    @property
    def in_process(self) -> bool:
        """True when `execute_now` settles an order without I/O."""
        ...

    async def execute(self, order: Order) -> Fill:
        """Execute `order` (amount_in in atomic units of the side it spends) and return its
        Fill (amount_in, amount_out and fee in atomic units, price_usd, ts in ms). Raises
        VenueError; `transient` True means the same order may be tried again."""
        ...

    def execute_now(self, order: Order) -> Fill:
        """As `execute`, synchronously; only called while `in_process` is True. Raises
        VenueError."""
        ...

    async def reconcile(self) -> list[Fill]:
        """Fills of orders this process sent before a restart and never settled (a venue
        without memory across restarts returns []). Raises VenueError."""
        ...


class HistoryReads(Protocol):
    """History that left the engine's memory, read from the system of record. Every read
    raises StoreUnavailable (an Unavailable) when the store cannot answer in time."""

    @property
    def signals_before_window(self) -> bool:
        """True when the store holds signals older than the dedupe window in memory."""
        ...

    async def signal(self, signal_id: str) -> SignalRecord | None:
        """The signal with this id and its executions, or None."""
        ...

    async def signal_by_client_id(self, client_id: str) -> SignalRecord | None:
        """The first signal sent with this client id, or None."""
        ...

    async def position(self, position_id: str) -> Position | None:
        """The position with this id (not dropped), or None."""
        ...

    async def closed_positions(
        self, agent_id: str, after: tuple[int, str] | None, limit: int
    ) -> list[Position]:
        """At most `limit` closed positions of the agent after the sort key (seq, id), oldest
        first."""
        ...

    async def trades(self, agent_id: str, after: tuple[int, str] | None, limit: int) -> list[Trade]:
        """At most `limit` trades of the agent after the sort key (ts ms, id), oldest first."""
        ...


class Store(Protocol):
    """Persistence of the engine's state: subscribed to the runtime's events and ticks (both
    only enqueue), awaited before a control-port change is acknowledged, and read for history
    that left memory. `kind` is "memory" (nothing persists) or "persistent"."""

    @property
    def kind(self) -> str:
        """Which store this is, as /health and the metrics name it ("memory" or "persistent")."""
        ...

    @property
    def history(self) -> HistoryReads | None:
        """Reads of history beyond memory; None when the store keeps no system of record."""
        ...

    @property
    def components(self) -> Mapping[str, ComponentHealth]:
        """Health of the store's servers by name ("redis", "postgres")."""
        ...

    @property
    def dead_letters(self) -> int:
        """Entries the system of record refused since start."""
        ...

    @property
    def buys_paused(self) -> bool:
        """True while the store cannot make a buy durable, so buys are paused."""
        ...

    @property
    def pending_writes(self) -> int:
        """Entries enqueued and not yet durable (the write-through's backlog); 0 when nothing
        is written or the store spills to a local file because Redis is down. An exit cascade
        waits between slices while it is large."""
        ...

    def on_events(self, events: list[ev.Event]) -> None:
        """Runtime subscriber: enqueue the transition's events for writing."""
        ...

    def on_ticks(self, ticks: list[Tick]) -> None:
        """Runtime subscriber: note the applied ticks (peak checkpoints)."""
        ...

    async def flushed(self, timeout: float | None = ...) -> None:
        """Return once everything enqueued so far is durable (written through or spilled);
        raises StoreUnavailable after `timeout` seconds."""
        ...

    async def flushed_with_prices(self, timeout: float | None = ...) -> None:
        """`flushed`, and the last prices and the position peaks they moved are durable too
        (they are otherwise written within 0.1 s and a checkpoint interval): what an agent
        shard waits for before it acknowledges a tick entry of the intake."""
        ...

    def write_behind_lag(self) -> Mapping[str, float]:
        """{"entries": count, "seconds": age of the oldest} not yet in the system of record."""
        ...

    async def close(self) -> None:
        """Drain what is queued (bounded) and release the servers and the data dir lock."""
        ...


PushTicks = Callable[[list[Tick]], object]


class Feed(Protocol):
    """A source of price ticks the daemon runs as a task: `run` pushes batches of ticks (USD per
    whole token, ts in ms) into the runtime until cancelled or exhausted."""

    @property
    def source(self) -> str:
        """The `Tick.source` of its ticks."""
        ...

    @property
    def last_tick_ms(self) -> int | None:
        """Wall-clock ms of its last pushed batch; None before the first (feed-age metric)."""
        ...

    async def run(self, push_ticks: PushTicks, /) -> None:
        """Push tick batches with `push_ticks` until cancelled or the source is exhausted."""
        ...


class LiveFeed(Feed, Protocol):
    """A feed from an external market-data service (Pyth Hermes, DexScreener): it prices the
    tokens its `watched` callable names, reports its health, counts what happened, and can
    fetch a first price on demand (a signal for a token it does not watch yet)."""

    def health(self) -> ComponentHealth:
        """{"status": "ok" | "connecting" | "backoff" | "stale" | "idle" | "down", "reason": str,
        "tokens": watched tokens it prices, "last_tick_age_ms": int | None, "reconnects": int,
        "last_error": str | None} (GET /health `components.feeds.<source>`)."""
        ...

    def counters(self) -> Mapping[str, int]:
        """Monotonic counts since start for the metrics: "ticks", "requests", "reconnects" and
        "errors_<kind>" (e.g. errors_http_429, errors_timeout, errors_malformed)."""
        ...

    def covers(self, token: str) -> bool:
        """Whether `fetch` can price `token` (Pyth: a configured feed id; DexScreener: any)."""
        ...

    async def fetch(self, tokens: list[str], timeout_s: float) -> list[Tick]:
        """One request for the latest prices of `tokens` now (not pushed: the caller pushes them),
        within `timeout_s`; [] on any failure (counted, never raised)."""
        ...
