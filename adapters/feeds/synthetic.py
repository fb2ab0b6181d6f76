"""Synthetic feed: a seeded random walk per token, for paper mode, demos and benchmarks.

Without configured tokens it walks the demo tokens: mints derived from a fixed label, which no
real token uses, so prices pushed for real tokens are never overwritten by the demo."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import Callable, Iterable

from solders.pubkey import Pubkey
from tradingd.adapters.app.settings import SyntheticFeedSettings
from tradingd.engine.assets import SOL_MINT
from tradingd.engine.model import Tick

DEMO_SYMBOLS = ("DEMOA", "DEMOB", "DEMOC")


def demo_mint(symbol: str) -> str:
    """A valid 32-byte base58 address derived from the label `tradingd-demo:<symbol>`."""
    return str(Pubkey(hashlib.sha256(f"tradingd-demo:{symbol}".encode()).digest()))


DEMO_TOKENS = {demo_mint(s): s for s in DEMO_SYMBOLS}


class RandomWalk:
    """Geometric random walk with occasional drift regimes, so exits of every kind happen."""

    def __init__(
        self,
        tokens: Iterable[str],
        seed: int,
        start: float,
        volatility_pct: float,
        known: dict[str, float] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        known = known or {}
        # A restarted daemon continues from the recovered prices instead of jumping back.
        self.prices = {t: known.get(t, start * (1 + 0.1 * i)) for i, t in enumerate(tokens)}
        self.drift = {t: 0.0 for t in self.prices}
        self.sigma = volatility_pct / 100

    def step(self) -> dict[str, float]:
        rng = self.rng
        for token, price in self.prices.items():
            if rng.random() < 0.02:
                self.drift[token] = rng.choice((-1.0, 0.0, 1.0, 2.0)) * self.sigma / 2
            shock = rng.gauss(self.drift[token], self.sigma)
            self.prices[token] = max(price * math.exp(shock), 1e-12)
        return dict(self.prices)

    def resume_from(self, known: dict[str, float]) -> None:
        """Continue each token's walk from its price in `known` (a restart, or a shard that
        starts leading the feed: the walk continues from the market, never jumps)."""
        for token in self.prices:
            if token in known:
                self.prices[token] = known[token]


class SyntheticFeed:
    source = "synthetic"

    def __init__(
        self,
        settings: SyntheticFeedSettings,
        demo: bool = False,
        known: dict[str, float] | Callable[[], dict[str, float]] | None = None,
    ) -> None:
        """`known`: the last prices (token -> USD) the walk starts from, or a callable giving
        them each time `run` starts (with shards the feed starts and stops as its leadership
        comes and goes, and must continue from the prices every shard has meanwhile)."""
        self.settings = settings
        self.tokens = list(settings.tokens) or list(DEMO_TOKENS)
        self.known = known if callable(known) else None
        self.walk = RandomWalk(
            self.tokens,
            settings.seed,
            settings.start_price_usd,
            settings.volatility_pct,
            known() if callable(known) else known,
        )
        self.last_tick_ms: int | None = None

    def ticks(self, now_ms: int) -> list[Tick]:
        ticks = [Tick(t, p, now_ms, self.source, decimals=6) for t, p in self.walk.step().items()]
        if self.settings.sol_price_usd is not None:
            ticks.append(
                Tick(SOL_MINT, self.settings.sol_price_usd, now_ms, self.source, decimals=9)
            )
        return ticks

    async def run(self, push: Callable[[list[Tick]], object]) -> None:
        import time

        if self.known is not None:
            self.walk.resume_from(self.known())
        while True:
            now = time.time_ns() // 1_000_000
            push(self.ticks(now))
            self.last_tick_ms = now
            await asyncio.sleep(self.settings.interval_ms / 1000)
