"""The notifier the daemon owns: one ChannelSender per configured channel, the runtime
subscriber that feeds them (NoticeRouter), their tasks over one aiohttp session, the daily
summary at each UTC midnight, and a bounded drain at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp
from tradingd.adapters.notify.config import EventKind, NotifySettings
from tradingd.adapters.notify.delivery import ChannelSender
from tradingd.adapters.notify.notices import (
    AgentDay,
    DailySummary,
    Notice,
    NoticeRouter,
    Offer,
    asset_label,
)
from tradingd.adapters.timestamps import iso_ms, wall_clock_ms
from tradingd.engine.state import EngineState

log = logging.getLogger("tradingd.notify")
DAY_MS: Final = 86_400_000
MAX_SUMMARY_AGENTS: Final = 50  # agents listed by name in one summary; the rest are counted
_SUMMARY_WAKE_S: Final = 60.0  # the midnight wait re-reads the clock at least this often
_STOP_TIMEOUT_S: Final = 2.0


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        engine: EngineState,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.senders = {c.name: ChannelSender(c) for c in settings.channels}
        routes: dict[EventKind, list[Offer]] = {}
        for sender in self.senders.values():
            for kind in sender.settings.events:
                routes.setdefault(kind, []).append(sender.offer)
        self.on_events = NoticeRouter(engine, routes)  # the runtime subscriber
        self.summary_channels = [
            s for s in self.senders.values() if "daily_summary" in s.settings.events
        ]  # noqa: E501
        self.summary_days: dict[str, str] = {}  # channel -> last UTC day summarized
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Open the session and start one sender task per channel (on the running loop)."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=2), trust_env=False
        )
        loop = asyncio.get_running_loop()
        for name, sender in self.senders.items():
            self._tasks.append(loop.create_task(sender.run(self._session), name=f"notify-{name}"))
        if self.summary_channels:
            self._tasks.append(loop.create_task(self._summary_loop(), name="notify-summary"))
        for task in self._tasks:
            task.add_done_callback(_task_done)
        log.info(
            "notifications on",
            extra={"channels": {n: s.settings.kind for n, s in self.senders.items()}},
        )

    # -- daily summary --------------------------------------------------------------------

    def summary(self, day_ms: int) -> DailySummary:
        """Every agent's performance as of the end of the UTC day starting at `day_ms`: its
        realized PnL that day and in all, round trips, drawdown and open positions."""
        day = day_ms // DAY_MS
        engine = self.engine
        open_by_agent: dict[str, int] = {}
        for p in engine.positions.values():
            if p.closed_at is None:
                open_by_agent[p.agent_id] = open_by_agent.get(p.agent_id, 0) + 1
        rows = []
        agents = list(engine.agents.values())
        for agent in agents[:MAX_SUMMARY_AGENTS]:
            perf = agent.perf
            rows.append(
                AgentDay(
                    agent_id=agent.id,
                    name=agent.name,
                    quote=asset_label(agent.quote),
                    quote_decimals=agent.quote_decimals,
                    day_realized_pnl=perf.day_realized if perf.day == day else 0,
                    realized_pnl=perf.realized_pnl,
                    trades=perf.trades,
                    wins=perf.wins,
                    losses=perf.losses,
                    max_drawdown_pct=round(perf.max_drawdown_pct, 4),
                    open_positions=open_by_agent.get(agent.id, 0),
                )
            )
        return DailySummary(iso_ms(day * DAY_MS)[:10], rows, len(agents))

    def post_daily_summary(self, day_ms: int) -> int:
        """Queue the summary of the UTC day of `day_ms` to every channel that takes it and has
        not had that day's yet. Returns how many channels it went to."""
        summary = self.summary(day_ms)
        notice = Notice("daily_summary", summary=summary)
        sent = 0
        for sender in self.summary_channels:
            if self.summary_days.get(sender.name) == summary.day:
                continue
            self.summary_days[sender.name] = summary.day
            sender.offer(notice)
            sent += 1
        return sent

    async def _summary_loop(self) -> None:
        """At each UTC midnight, the day that ended. A restart does not resend a day already
        summarized by this process, and a daemon started mid-day sends its first at midnight."""
        next_midnight = (self.clock() // DAY_MS + 1) * DAY_MS
        while True:
            left_s = (next_midnight - self.clock()) / 1000
            if left_s > 0:
                await asyncio.sleep(min(left_s, _SUMMARY_WAKE_S))
                continue
            try:
                self.post_daily_summary(next_midnight - DAY_MS)
            except Exception:
                log.exception("daily summary failed")
            next_midnight += DAY_MS

    # -- state ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {name: sender.health() for name, sender in self.senders.items()}

    @property
    def idle(self) -> bool:
        return all(s.idle for s in self.senders.values())

    async def close(self) -> None:
        """Give the queues up to `[notify] drain_s` to empty, then stop the senders; what is
        still queued is dropped (and counted)."""
        deadline = time.monotonic() + self.settings.drain_s
        while not self.idle and time.monotonic() < deadline and self._session is not None:
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_STOP_TIMEOUT_S)
        self._tasks.clear()
        left = 0
        for sender in self.senders.values():
            n = len(sender.queue)
            sender.queue.clear()
            sender.stats.dropped += n
            left += n
        if left:
            log.warning("notifications dropped at shutdown", extra={"notices": left})
        if self._session is not None:
            await self._session.close()
            self._session = None


def _task_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # a bug: say so, by its type
        log.error(
            "notification task died",
            extra={"task": task.get_name(), "error": type(task.exception()).__name__},
        )
