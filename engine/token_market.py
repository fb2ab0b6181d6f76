"""What the feeds tell about a token beyond its price: pool data (liquidity, market cap, FDV, 24 h
volume, pair age), the price's confidence, and our own measure of its volatility from the ticks
applied. Pure; updated only from the Engine's tick transition."""

from __future__ import annotations

import math

from msgspec import Struct

from .model import Tick

VOL_SAMPLE_MS = 1000  # one volatility sample per second at most: tick rates differ by feed
VOL_HALF_LIFE_MS = 300_000  # the estimate forgets with a 5-minute half-life
VOL_MIN_SAMPLES = 10  # fewer samples: volatility unknown


class PoolData(Struct, frozen=True, kw_only=True):
    """A pool's figures as one source gave them at `ts` (epoch ms): USD values, `pair_created_at`
    epoch ms; None where the source did not say."""

    source: str
    ts: int
    liquidity_usd: float | None = None
    market_cap_usd: float | None = None
    fdv_usd: float | None = None
    volume_24h_usd: float | None = None
    pair_created_at: int | None = None


class Volatility(Struct):
    """An exponentially weighted estimate of the variance of log returns per ms, from samples at
    least VOL_SAMPLE_MS apart."""

    last_ts: int
    last_price: float
    var_per_ms: float = 0.0
    samples: int = 0

    def add(self, ts: int, price: float) -> None:
        """A price at `ts` (epoch ms): a sample once VOL_SAMPLE_MS passed since the last one."""
        dt = ts - self.last_ts
        if dt < VOL_SAMPLE_MS:
            return
        r = math.log(price / self.last_price)
        alpha = 1.0 - 0.5 ** (dt / VOL_HALF_LIFE_MS)
        self.var_per_ms += alpha * (r * r / dt - self.var_per_ms)
        self.samples += 1
        self.last_ts, self.last_price = ts, price

    def pct_per_minute(self) -> float | None:
        """The standard deviation of one minute's return, in percent; None before enough
        samples."""
        if self.samples < VOL_MIN_SAMPLES:
            return None
        return math.sqrt(self.var_per_ms * 60_000) * 100


class TokenMarket:
    """Per token: the newest pool data, the newest confidence ratio (conf / price) with its ts,
    and the volatility of the applied prices. Bounded by the price book: a token's entry goes
    when its price is evicted (`forget`)."""

    def __init__(self) -> None:
        # The ticks themselves are kept (no copy on the tick path); views are built on read.
        self.pool_ticks: dict[str, Tick] = {}  # token -> its newest tick with a pool figure
        self.conf_ticks: dict[str, Tick] = {}  # token -> its newest tick with a confidence
        self.volatility: dict[str, Volatility] = {}

    def on_tick(self, tick: Tick) -> None:
        """Keep the market data a tick carries (applied or kept for failover). A tick with any
        pool figure replaces the token's pool data whole: figures from two different moments
        are never mixed."""
        if tick.conf_usd is not None:
            self.conf_ticks[tick.token] = tick
        if (
            tick.liquidity_usd is not None
            or tick.market_cap_usd is not None
            or tick.fdv_usd is not None
            or tick.volume_24h_usd is not None
            or tick.pair_created_at is not None
        ):
            self.pool_ticks[tick.token] = tick

    def on_applied(self, tick: Tick) -> None:
        """A tick became the token's price: a volatility sample."""
        vol = self.volatility.get(tick.token)
        if vol is None:
            self.volatility[tick.token] = Volatility(tick.ts, tick.price_usd)
        else:
            vol.add(tick.ts, tick.price_usd)

    def pool(self, token: str, now: int, max_age_ms: int) -> PoolData | None:
        """The token's pool data if at most `max_age_ms` old at `now`, else None."""
        t = self.pool_ticks.get(token)
        if t is None or now - t.ts > max_age_ms:
            return None
        return PoolData(
            source=t.source,
            ts=t.ts,
            liquidity_usd=t.liquidity_usd,
            market_cap_usd=t.market_cap_usd,
            fdv_usd=t.fdv_usd,
            volume_24h_usd=t.volume_24h_usd,
            pair_created_at=t.pair_created_at,
        )

    def liquidity_usd(self, token: str, now: int, max_age_ms: int) -> float | None:
        """The token's pool liquidity in USD if known and fresh, else None."""
        t = self.pool_ticks.get(token)
        return t.liquidity_usd if t is not None and now - t.ts <= max_age_ms else None

    def conf_ratio(self, token: str, now: int, max_age_ms: int) -> float | None:
        """The newest confidence half-width over price (0.001 = 0.1%) if fresh, else None."""
        t = self.conf_ticks.get(token)
        if t is None or t.conf_usd is None or now - t.ts > max_age_ms or t.price_usd <= 0:
            return None
        return t.conf_usd / t.price_usd

    def forget(self, token: str) -> None:
        """Drop what is known of the token (its price left the price book)."""
        self.pool_ticks.pop(token, None)
        self.conf_ticks.pop(token, None)
        self.volatility.pop(token, None)
