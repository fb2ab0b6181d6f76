"""A first price for a signal's token: before a buy signal is applied, a token with no fresh
price (or no fresh market data, for agents that filter on liquidity or risk) is fetched once
from the live feeds, within `[feeds] signal_fetch_timeout_ms`, instead of being skipped."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon
    from tradingd.engine.model import Tick

log = logging.getLogger("tradingd.feeds")
MAX_FETCHES = 64  # tokens fetched at once; a flood of new tokens beyond it is not fetched


class FirstPrice:
    """Fetches for signals, at most one in flight per token (later signals for the same token
    wait for the same fetch) and `MAX_FETCHES` tokens at once."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.in_flight: dict[str, asyncio.Task[list[Tick]]] = {}
        self.fetched = 0  # fetches that brought a price (metrics)
        self.missed = 0  # fetches that brought none in time

    def wanted(self, token: str, client_id: str | None) -> bool:
        """Whether a buy signal for `token` should wait for a fetch: live feeds that can price
        it exist, the signal is not a repeat, and the token lacks a fresh price, or fresh
        market data while an agent filters on liquidity or risk."""
        d = self.daemon
        engine = d.engine
        if not d.settings.feeds.signal_fetch_timeout_ms or not d.live_feeds:
            return False
        if client_id is not None and client_id in engine.signal_by_client:
            return False
        now = engine.clock()
        tick = engine.prices.get(token)
        if tick is None or now - tick.ts > engine.max_price_age_ms:
            return any(f.covers(token) for f in d.live_feeds.values())
        if engine.market.pool(token, now, engine.price_policy.max_market_age_ms) is not None:
            return False
        return any(  # only then are the agents' filters read
            f.min_liquidity_usd is not None or f.max_risk_score is not None
            for f in (a.config.signals for a in engine.agents.values())
        )

    async def fetch(self, token: str) -> int:
        """Fetch and push the token's prices; returns the ticks applied (0 on timeout or when
        no feed answered). Never raises for a feed's failure."""
        task = self.in_flight.get(token)
        if task is None:
            if len(self.in_flight) >= MAX_FETCHES:
                return 0
            task = asyncio.ensure_future(self._fetch(token))
            self.in_flight[token] = task
            task.add_done_callback(lambda _t: self.in_flight.pop(token, None))
        try:
            ticks = await asyncio.shield(task)
        except Exception:
            log.exception("first-price fetch failed", extra={"token": token})
            return 0
        if not ticks:
            self.missed += 1
            return 0
        self.fetched += 1
        if not self.daemon.runtime.accepting:
            return 0
        intake = self.daemon.shard_intake
        if intake is not None:  # agent shards: every shard gets the price before the signal
            await intake.publish_ticks(ticks)
            return len(ticks)
        return self.daemon.runtime.push_ticks(ticks).accepted

    async def _fetch(self, token: str) -> list[Tick]:
        d = self.daemon
        timeout_s = d.settings.feeds.signal_fetch_timeout_ms / 1000
        feeds = [f for f in d.live_feeds.values() if f.covers(token)]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(f.fetch([token], timeout_s) for f in feeds)), timeout_s + 0.25
            )
        except TimeoutError:
            return []
        return [t for ticks in results for t in ticks if t.token == token]
