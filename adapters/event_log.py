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


def log_events(events: list[ev.Event]) -> None:
    for e in events:
        kind = type(e)
        if kind is ev.PositionOpened:
            p = e.position  # type: ignore[attr-defined]
            log.info(
                "position opened",
                extra={
                    "agent_id": p.agent_id,
                    "position_id": p.id,
                    "token": p.token,
                    "amount": str(p.amount),
                    "cost": str(p.cost),
                    "entry_price_usd": p.entry_price_usd,
                    "signal_id": p.signal_id,
                },
            )
        elif kind is ev.ExitTriggered:
            log.info(
                "exit triggered",
                extra={
                    "agent_id": e.agent_id,
                    "position_id": e.position_id,  # type: ignore[attr-defined]
                    "reason": e.reason,
                    "price_usd": e.price_usd,  # type: ignore[attr-defined]
                    "sell_amount": str(e.sell_amount),
                },
            )  # type: ignore[attr-defined]
        elif kind is ev.DcaTriggered:
            log.info(
                "dca triggered",
                extra={
                    "agent_id": e.agent_id,
                    "position_id": e.position_id,  # type: ignore[attr-defined]
                    "price_usd": e.price_usd,
                    "level": e.level,
                },
            )  # type: ignore[attr-defined]
        elif kind is ev.OrderFilled:
            t = e.trade  # type: ignore[attr-defined]
            log.info(
                "order filled",
                extra={
                    "agent_id": t.agent_id,
                    "position_id": t.position_id,
                    "order_id": e.order_id,  # type: ignore[attr-defined]
                    "side": t.side,
                    "amount": str(t.amount),
                    "quote_amount": str(t.quote_amount),
                    "price_usd": t.price_usd,
                    "reason": t.reason,
                    "venue_ref": t.venue_ref,
                },
            )
        elif kind is ev.OrderFailed:
            log.warning(
                "order failed",
                extra={
                    "agent_id": e.agent_id,
                    "position_id": e.position_id,  # type: ignore[attr-defined]
                    "order_id": e.order_id,
                    "reason": e.reason,
                },
            )  # type: ignore[attr-defined]
        elif kind is ev.PositionClosed:
            p = e.position  # type: ignore[attr-defined]
            log.info(
                "position closed",
                extra={
                    "agent_id": p.agent_id,
                    "position_id": p.id,
                    "exit_reason": p.exit_reason,
                    "realized_pnl": str(p.realized_pnl),
                },
            )
        elif kind is ev.Alert:
            log.warning(e.message, extra={"code": e.code, **e.details})  # type: ignore[attr-defined]
        elif kind is ev.HaltChanged:
            log.warning("halt changed", extra={"buys": e.buys, "flatten": e.flatten})  # type: ignore[attr-defined]
