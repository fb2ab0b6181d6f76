"""Price selection across sources: each token's last tick per source, which source prices the
token (the highest-priority one with a fresh tick), and the cross-check that notices two live
sources disagreeing. Pure; called only from the Engine's tick and signal transitions."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import msgspec
from msgspec import Struct

from .model import Tick
from .money import exact

# Hysteresis: a divergence clears once the spread is back under this share of the threshold,
# so a spread hovering at the threshold does not raise an alert per tick.
CLEAR_SHARE = Fraction(3, 4)


class PricePolicy(Struct, frozen=True, kw_only=True):
    """How a token's price is chosen among sources ([prices] and [tokens.<mint>] in the config).

    `sources`: source names by priority, highest first; a source not listed ranks after every
    listed one, and unlisted sources rank equal. Empty: every source is equal (the newest tick
    wins, as with one source). `token_sources`: per-token lists that replace `sources`.
    `max_divergence_pct`: two fresh sources of a token differing by more than this percent of
    the lower price are diverged (None: no cross-check; with a priority list only listed
    sources count); `block_buys_on_divergence`: a diverged token cannot be bought. `max_market_age_ms`: market data (liquidity, market cap, FDV, 24 h
    volume, pair age, confidence) older than this is unknown. `max_sources_per_token`: bound on
    the sources remembered per token (a push client names its own sources)."""

    sources: tuple[str, ...] = ()
    token_sources: Mapping[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    max_divergence_pct: float | None = None
    block_buys_on_divergence: bool = True
    max_market_age_ms: int = 300_000
    max_sources_per_token: int = 8


class Divergence(Struct, frozen=True):
    """Two or more fresh sources of a token disagree: their prices (USD) by source and the
    spread, (highest − lowest) / lowest in percent."""

    prices: dict[str, float]
    spread_pct: float


def _owns(source: str, token: str) -> bool:
    """Whether `source` is the exchange whose market `token` is ("binance", "binance:BTC/USDT")."""
    n = len(source)
    return len(token) > n and token[n] == ":" and token.startswith(source)


def _ranks(order: tuple[str, ...]) -> tuple[dict[str, int], int]:
    ranks: dict[str, int] = {}
    for i, source in enumerate(order):
        ranks.setdefault(source, i)
    return ranks, len(order)


class PriceSources:
    """Each token's last tick per source, for tokens two or more sources have priced (see
    `ticks`), and the token's diverged state. Bounded by the price book (a token's entry goes
    when its price is evicted) and `max_sources_per_token`."""

    def __init__(self, policy: PricePolicy) -> None:
        self.policy = policy
        self.by_token: dict[str, dict[str, Tick]] = {}
        self.diverged: dict[str, Divergence] = {}
        pct = policy.max_divergence_pct
        self._limit: Fraction | None = exact(pct) if pct is not None else None
        # (rank by source, the rank of an unlisted source): looked up per tick
        self._ranks = _ranks(policy.sources)
        self._token_ranks = {t: _ranks(s) for t, s in policy.token_sources.items()}

    def rank(self, token: str, source: str) -> int:
        """0 for the highest listed priority; every unlisted source shares the lowest rank. An
        exchange market's own exchange (source "binance" for "binance:BTC/USDT": its ticker
        feed) ranks -1, above any list: its ticker is the price its orders execute at, so no
        other source (a push client's) moves the market while the exchange's tick is fresh."""
        if _owns(source, token):
            return -1
        ranks, unlisted = self._token_ranks.get(token, self._ranks)
        return ranks.get(source, unlisted)

    def ticks(self, token: str, price: Tick | None) -> Mapping[str, Tick]:
        """The last tick of every source of `token`; `price` is the token's price, which is all
        there is while one source prices it."""
        ticks = self.by_token.get(token)
        if ticks is not None:
            return ticks
        return {price.source: price} if price is not None else {}

    def listed(self, token: str, source: str) -> bool:
        """Whether `source` is named in the token's priority list (always True without one, and
        for an exchange market's own exchange)."""
        ranks, unlisted = self._token_ranks.get(token, self._ranks)
        return not unlisted or source in ranks or _owns(source, token)

    def record(self, tick: Tick) -> bool:
        """Remember `tick` as its source's last in the token's table (which must exist). A new
        source beyond `max_sources_per_token` takes the place of the lowest-priority source
        (the oldest among equals), never of one ranked above it; False (nothing recorded) when
        every source in the table outranks it."""
        ticks = self.by_token[tick.token]
        if tick.source not in ticks and len(ticks) >= self.policy.max_sources_per_token:
            token, mine = tick.token, self.rank(tick.token, tick.source)
            victim = max(ticks, key=lambda s: (self.rank(token, s), -ticks[s].ts))
            if self.rank(token, victim) < mine:
                return False
            del ticks[victim]
        ticks[tick.source] = tick
        return True

    def outranked(self, tick: Tick, now: int, max_age_ms: int) -> bool:
        """Whether a higher-priority source has a fresh tick (at most `max_age_ms` old at `now`)
        for the token: then `tick` is kept for failover and the cross-check, not applied."""
        ticks = self.by_token.get(tick.token)
        if ticks is None or len(ticks) < 2:
            return False
        mine = self.rank(tick.token, tick.source)
        if mine < 0:  # the market's own exchange
            return False
        oldest = now - max_age_ms
        return any(
            t.ts >= oldest and self.rank(tick.token, s) < mine
            for s, t in ticks.items()
            if s != tick.source
        )

    def still_diverged(self, token: str, now: int, max_age_ms: int) -> bool:
        """Whether the token is diverged and its fresh sources (at `now`) still keep it so: a
        source gone silent no longer counts, even before a tick or clock turn clears the state."""
        if token not in self.diverged or self._limit is None:
            return False
        spread = self._spread(token, now, max_age_ms)
        return spread is not None and spread[0] > self._limit * CLEAR_SHARE

    def check(self, token: str, now: int, max_age_ms: int) -> tuple[str, Divergence] | None:
        """Re-evaluate the token's diverged state. Returns ("diverged", d) when it starts,
        ("cleared", last d) when the spread is back under 3/4 of the threshold (or fewer than
        two sources are fresh), None when the state did not change."""
        if self._limit is None:
            return None
        spread = self._spread(token, now, max_age_ms)
        was = self.diverged.get(token)
        if was is None:
            if spread is not None and spread[0] > self._limit:
                d = Divergence(spread[1], float(spread[0]))
                self.diverged[token] = d
                return "diverged", d
            return None
        if spread is None or spread[0] <= self._limit * CLEAR_SHARE:
            del self.diverged[token]
            return "cleared", was
        return None

    def forget(self, token: str) -> None:
        """Drop everything known of the token (its price left the price book)."""
        self.by_token.pop(token, None)
        self.diverged.pop(token, None)

    def _spread(
        self, token: str, now: int, max_age_ms: int
    ) -> tuple[Fraction, dict[str, float]] | None:
        ticks = self.by_token.get(token)
        if ticks is None or len(ticks) < 2:
            return None
        oldest = now - max_age_ms
        # With a priority list only the listed sources are cross-checked: a source the
        # operator did not name (a push client's own) cannot block buys.
        fresh = {
            s: t.price_usd for s, t in ticks.items() if t.ts >= oldest and self.listed(token, s)
        }
        if len(fresh) < 2:
            return None
        low, high = exact(min(fresh.values())), exact(max(fresh.values()))
        return (high - low) * 100 / low, fresh
