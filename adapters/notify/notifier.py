"""The notifier the daemon owns: one ChannelSender per channel (configured, or added while
running by the control port), the runtime subscriber that feeds them (NoticeRouter), their tasks
over one aiohttp session, the daily summary at each UTC midnight, and a bounded drain at
shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import aiohttp
from tradingd.adapters.notify.config import (
    MAX_CHANNELS,
    ChannelSettings,
    EventKind,
    NotifySettings,
)
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
from tradingd.engine import events as ev
from tradingd.engine.errors import Conflict, NotFound
from tradingd.engine.state import EngineState

log = logging.getLogger("tradingd.notify")
DAY_MS: Final = 86_400_000
MAX_SUMMARY_AGENTS: Final = 50  # agents listed by name in one summary; the rest are counted
_SUMMARY_WAKE_S: Final = 60.0  # the midnight wait re-reads the clock at least this often
_STOP_TIMEOUT_S: Final = 2.0
TEST_CODE: Final = "notification_test"
# Where a channel comes from: the config file's [[notify.channels]], or the control port.
ChannelOrigin = Literal["config", "api"]


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        engine: EngineState,
        clock: Callable[[], int] = wall_clock_ms,
        symbols: Mapping[str, str] | None = None,
    ) -> None:
        """`symbols`: mint -> symbol (the config's [tokens]), to name tokens in messages."""
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.senders: dict[str, ChannelSender] = {}
        self.origins: dict[str, ChannelOrigin] = {}
        self.created_at: dict[str, int] = {}  # api channels: epoch ms
        self.on_events = NoticeRouter(engine, {}, symbols)  # the runtime subscriber
        self.summary_channels: list[ChannelSender] = []
        self.summary_days: dict[str, str] = {}  # channel -> last UTC day summarized
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # channel name (or summary) -> task
        for channel in settings.channels:
            self.senders[channel.name] = ChannelSender(channel)
            self.origins[channel.name] = "config"
        self._reroute()

    @property
    def started(self) -> bool:
        return self._session is not None

    def start(self) -> None:
        """Open the session and start one sender task per channel (on the running loop)."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=2), trust_env=False
        )
        for sender in self.senders.values():
            self._start_sender(sender)
        self._start_summary()
        log.info(
            "notifications on",
            extra={"channels": {n: s.settings.kind for n, s in self.senders.items()}},
        )

    def _start_sender(self, sender: ChannelSender) -> None:
        assert self._session is not None
        task = asyncio.get_running_loop().create_task(
            sender.run(self._session), name=f"notify-{sender.name}"
        )
        task.add_done_callback(_task_done)
        self._tasks[sender.name] = task

    def _start_summary(self) -> None:
        # Keyed apart from channels: a channel name is [a-z0-9][a-z0-9_-]*, never " summary".
        if self.summary_channels and " summary" not in self._tasks:
            task = asyncio.get_running_loop().create_task(
                self._summary_loop(), name="notify-summary"
            )
            task.add_done_callback(_task_done)
            self._tasks[" summary"] = task

    def _reroute(self) -> None:
        routes: dict[EventKind, list[Offer]] = {}
        for sender in self.senders.values():
            for kind in sender.settings.events:
                routes.setdefault(kind, []).append(sender.offer)
        self.on_events.route(routes)
        self.summary_channels = [
            s for s in self.senders.values() if "daily_summary" in s.settings.events
        ]

    # -- channels added and removed while running (the control port) ----------------------

    def check_new(self, name: str) -> None:
        """Raises Conflict if a channel named `name` exists or the bound is reached."""
        if name in self.senders:
            origin = self.origins[name]
            raise Conflict(f"a notification channel named {name!r} exists ({origin})",
                           {"name": name, "origin": origin})  # fmt: skip
        if len(self.senders) >= MAX_CHANNELS:
            raise Conflict(
                f"{len(self.senders)} notification channels exist, the most allowed: remove one",
                {"limit": MAX_CHANNELS},
            )

    def add_channel(
        self, channel: ChannelSettings, origin: ChannelOrigin = "api", created_at: int = 0
    ) -> ChannelSender:
        """Add a channel (its secrets resolved) and, if the notifier runs, start its sender at
        once. Raises Conflict (check_new)."""
        self.check_new(channel.name)
        sender = ChannelSender(channel)
        self.senders[channel.name] = sender
        self.origins[channel.name] = origin
        if created_at:
            self.created_at[channel.name] = created_at
        self._reroute()
        if self._session is not None:
            self._start_sender(sender)
            self._start_summary()
        log.info("notification channel added",
                 extra={"channel": channel.name, "kind": channel.kind, "origin": origin})  # fmt: skip
        return sender

    async def remove_channel(self, name: str) -> ChannelSender:
        """Stop and remove a channel: no new notice reaches it, its sender is stopped (a request
        in flight is abandoned) and what it still held is dropped, counted in its stats."""
        sender = self.senders.pop(name, None)
        if sender is None:
            raise NotFound("unknown notification channel", {"name": name})
        self.origins.pop(name, None)
        self.created_at.pop(name, None)
        self.summary_days.pop(name, None)
        self._reroute()
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=_STOP_TIMEOUT_S)
        left = len(sender.queue)
        sender.queue.clear()
        sender.stats.dropped += left
        log.info("notification channel removed",
                 extra={"channel": name, "dropped": left})  # fmt: skip
        return sender

    def queue_test(self, name: str) -> None:
        """Queue a test message (an alert with code `notification_test`) on one channel."""
        sender = self.senders.get(name)
        if sender is None:
            raise NotFound("unknown notification channel", {"name": name})
        message = f"tradingd test message for channel {name}: delivery works"
        sender.offer(Notice("alerts", ev.Alert(ts=self.clock(), code=TEST_CODE, message=message)))

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
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_S)
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
