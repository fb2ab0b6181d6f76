"""Trading events as structured log lines: what an operator tails to see the daemon trade.

Only facts an operator acts on (exits, fills, failures, alerts, halts, closes) — not every
balance change or filtered signal, which would drown them at any real volume. The subscriber
only queues; a task writes the lines off the latency path (formatting JSON for a 100-agent
signal costs milliseconds that the signal must not wait for)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from engine import events as ev

log = logging.getLogger("tradingd.trading")
_LOGGED = frozenset(
    {
        ev.ExitTriggered,
        ev.DcaTriggered,
        ev.OrderFilled,
        ev.OrderFailed,
        ev.PositionClosed,
        ev.Alert,
        ev.HaltChanged,
    }
)


class EventLog:
    """Subscriber + writer task. Bounded: past `limit` queued events the oldest are counted
    as dropped (and said so), never blocking the engine."""

    def __init__(self, limit: int = 100_000, interval_s: float = 0.05) -> None:
        self.queue: deque[ev.Event] = deque()
        self.limit = limit
        self.interval_s = interval_s
        self.dropped = 0

    def __call__(self, events: list[ev.Event]) -> None:
        for e in events:
            if type(e) in _LOGGED:
                if len(self.queue) >= self.limit:
                    self.dropped += 1
                    continue
                self.queue.append(e)

    def flush(self) -> None:
        if self.dropped:
            log.warning("trading log lines dropped (queue full)", extra={"dropped": self.dropped})
            self.dropped = 0
        batch, self.queue = self.queue, deque()
        log_events(list(batch))

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                if self.queue or self.dropped:
                    self.flush()
        finally:
            self.flush()


# event type -> (level, message, where the fields live, fields); money goes out as strings
_LINES: dict[type, tuple[int, str, str | None, tuple[str, ...]]] = {
    ev.ExitTriggered: (
        logging.INFO,
        "exit triggered",
        None,
        ("agent_id", "position_id", "token", "reason", "price_usd", "sell_amount"),
    ),
    ev.DcaTriggered: (
        logging.INFO,
        "dca triggered",
        None,
        ("agent_id", "position_id", "price_usd", "level"),
    ),
    ev.OrderFilled: (
        logging.INFO,
        "order filled",
        "trade",
        (
            "agent_id",
            "position_id",
            "side",
            "token",
            "amount",
            "quote_amount",
            "price_usd",
            "reason",
            "venue_ref",
        ),
    ),
    ev.OrderFailed: (
        logging.WARNING,
        "order failed",
        None,
        ("agent_id", "position_id", "order_id", "reason"),
    ),
    ev.PositionClosed: (
        logging.INFO,
        "position closed",
        "position",
        ("agent_id", "id", "token", "exit_reason", "realized_pnl"),
    ),
    ev.HaltChanged: (logging.WARNING, "halt changed", None, ("buys", "flatten")),
}
_MONEY = frozenset({"sell_amount", "amount", "quote_amount", "realized_pnl"})


def log_events(events: list[ev.Event]) -> None:
    for e in events:
        if isinstance(e, ev.Alert):
            log.warning(e.message, extra={"code": e.code, **e.details})
            continue
        line = _LINES.get(type(e))
        if line is None:
            continue
        level, message, inner, fields = line
        source = getattr(e, inner) if inner else e
        extra = {("position_id" if f == "id" else f): getattr(source, f) for f in fields}
        for f in _MONEY.intersection(extra):
            extra[f] = str(extra[f])
        if isinstance(e, ev.OrderFilled):
            extra["order_id"] = e.order_id
        log.log(level, message, extra=extra)
