"""The price book's bounds and token decimals: which prices must be kept (held tokens, agents'
quotes, the watchlist), room for a new token's first price in a full book (stale prices nobody
needs are evicted), and decimals that must never change under held amounts. Functions of the
engine's state, called only from its transitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev
from .assets import KNOWN_DECIMALS, is_market, quote_mint
from .model import Tick
from .token_market import VOL_SAMPLE_MS

if TYPE_CHECKING:
    from .state import EngineState


def is_held(state: EngineState, token: str) -> bool:
    """Whether a live position holds (or is buying) `token`, a resting buy waits for it, it is
    an agent's quote, or it is in the watchlist: its price is needed whatever the bound.
    O(agents)."""
    if token in state.watchlist:
        return True
    return any(
        e.by_token.get(token, 0) > 0 or e.committed.get(token, 0) > 0
        for e in (b.exposure for b in state.books.values())
    ) or any(quote_mint(b.agent.quote) == token for b in state.books.values())


def room_for_price(state: EngineState, token: str, now: int) -> bool:
    """Whether a first price of `token` may enter a full price book (`max_priced_tokens`).
    A held token (see `is_held`) always may; one named by a signal in the dedupe window may
    until the book holds twice the bound (signals are client input too: they must not grow
    it without end). Otherwise room is made by evicting the prices nobody needs: not held,
    not recently signalled, and older than `max_price_age_ms`; with none, the token is
    refused and the book is not rescanned for a second, so a flood of new mints costs
    O(agents) per tick and cannot churn the book (or Redis)."""
    if is_held(state, token):
        return True
    if token in state.signal_window.tokens and len(state.prices) < 2 * state.max_priced_tokens:
        return True
    if now < state._no_room_until:
        return False
    oldest = now - state.max_price_age_ms
    watched = set(state.watchlist) | state.signal_window.tokens.keys()
    watched.update(quote_mint(b.agent.quote) for b in state.books.values())
    for e in (b.exposure for b in state.books.values()):
        watched.update(t for t, n in e.by_token.items() if n > 0)
    watched.update(e.token for e in state.entries.values())  # resting buys wait for a price
    stale = [m for m, t in state.prices.items() if t.ts < oldest and m not in watched]
    if not stale:
        state._no_room_until = now + 1000
        return False
    for mint in stale:
        del state.prices[mint]
        state.index.forget(mint)
        state.sources.forget(mint)
        state.market.forget(mint)
        if mint not in KNOWN_DECIMALS:
            state.decimals.pop(mint, None)
        state._emit(ev.PriceEvicted(ts=now, token=mint))
    return True


def admit_tick(state: EngineState, tick: Tick, now: int) -> str | None:
    """Take a tick (its ts already clamped to `now`) into the price book. Returns None when it
    became the token's price, else why not: `stale` (older than `max_price_age_ms`: no exit
    ever acts on a stale price), `out_of_order` (older than its source's last tick for the
    token, or than the token's price from a source of the same priority), `decimals_conflict`,
    `token_capacity` (see `room_for_price`), `secondary` (kept for failover and the
    cross-check: a higher-priority source has a fresh price, see price_sources),
    `source_capacity` (a new source for a token whose `max_sources_per_token` sources all
    outrank it). A tick that
    gets as far as `secondary` also updates the token's market data and divergence state."""
    # The hot path of every tick: one lookup per table, no call when nothing needs one.
    ts, token, source = tick.ts, tick.token, tick.source
    if now - ts > state.max_price_age_ms:
        return "stale"
    sources = state.sources
    last = state.prices.get(token)
    # A token priced by one source so far has no per-source table: its price is that source's
    # last tick (PriceSources.ticks); the table starts with the second source.
    by_source = sources.by_token.get(token)
    if by_source is None:
        same = last if last is not None and last.source == source else None
    else:
        same = by_source.get(source)
    if same is not None and ts < same.ts:
        return "out_of_order"
    if (
        last is not None
        and ts < last.ts
        and sources.rank(token, last.source) == sources.rank(token, source)
    ):
        return "out_of_order"
    decimals = tick.decimals
    if decimals is not None and is_market(token):
        decimals = None  # an exchange market's scale comes from its rules, never from a tick
    if (
        decimals is not None
        and state.decimals.get(token, decimals) != decimals
        and decimals_conflict(state, token, decimals, now)
    ):
        return "decimals_conflict"
    if (
        last is None
        and len(state.prices) >= state.max_priced_tokens
        and not room_for_price(state, token, now)
    ):
        return "token_capacity"
    if by_source is not None:
        if same is not None:
            by_source[source] = tick
        elif not sources.record(tick):
            return "source_capacity"
    elif last is not None and same is None:  # a second source: the table starts
        by_source = sources.by_token[token] = {last.source: last, source: tick}
    market = state.market
    # Market data feeds the buy filters (liquidity, risk): with a priority list, only the
    # sources it names may supply it, never a push client's own source.
    if (
        tick.conf_usd is not None
        or tick.liquidity_usd is not None
        or (
            tick.market_cap_usd is not None
            or tick.fdv_usd is not None
            or tick.volume_24h_usd is not None
            or tick.pair_created_at is not None
        )
    ) and sources.listed(token, source):
        market.on_tick(tick)
    if decimals is not None and token not in state.decimals:
        state.decimals[token] = decimals
    if by_source is not None:
        if sources.policy.max_divergence_pct is not None:
            cross_check(state, token, now)
        if sources.outranked(tick, now, state.max_price_age_ms):
            return "secondary"
    state.prices[token] = tick
    vol = market.volatility.get(token)
    if vol is None or ts - vol.last_ts >= VOL_SAMPLE_MS:
        market.on_applied(tick)  # a volatility sample at most once a second
    return None


def cross_check(state: EngineState, token: str, now: int) -> None:
    """Re-evaluate whether the token's fresh sources disagree; an alert when that starts
    (`price_divergence`, with each source's price) and when it ends
    (`price_divergence_cleared`)."""
    change = state.sources.check(token, now, state.max_price_age_ms)
    if change is None:
        return
    what, d = change
    limit = state.price_policy.max_divergence_pct
    if what == "diverged":
        message = "price sources disagree"
        if state.price_policy.block_buys_on_divergence:
            message += ": buys of the token are blocked until they agree"
        state._emit(
            ev.Alert(
                ts=now,
                code="price_divergence",
                message=message,
                details={
                    "token": token,
                    "prices": d.prices,
                    "spread_pct": round(d.spread_pct, 6),
                    "max_divergence_pct": limit,
                },
            )
        )
    else:
        state._emit(
            ev.Alert(
                ts=now,
                code="price_divergence_cleared",
                message="price sources agree again",
                details={"token": token, "max_divergence_pct": limit},
            )
        )


def decimals_conflict(state: EngineState, token: str, decimals: int, now: int) -> bool:
    """True (and an alert) when `decimals` contradicts the token's known decimals: amounts
    already held were counted in the known ones and are never re-scaled silently."""
    known = state.decimals.get(token)
    if known is None or known == decimals:
        return False
    state._emit(
        ev.Alert(
            ts=now,
            code="decimals_conflict",
            message="refused: decimals differ from the token's known decimals",
            details={"token": token, "known": known, "given": decimals},
        )
    )
    return True


def learn_decimals(state: EngineState, token: str, decimals: int | None) -> None:
    """Keep `decimals` as the token's own when none are known yet (None: nothing learned)."""
    if decimals is not None and token not in state.decimals:
        state.decimals[token] = decimals


def watched_tokens(state: EngineState, now: int, recent_signal_ms: int) -> set[str]:
    """The tokens live feeds must price: held or being bought (see `is_held`), agents' quotes,
    the watchlist, tokens of resting buys, and tokens named by signals received in the last
    `recent_signal_ms`. O(agents + resting buys + recent signals)."""
    watched = set(state.watchlist)
    watched.update(quote_mint(b.agent.quote) for b in state.books.values())
    for e in (b.exposure for b in state.books.values()):
        watched.update(t for t, n in e.by_token.items() if n > 0)
    watched.update(e.token for e in state.entries.values())  # resting buys wait for a price
    cutoff = now - recent_signal_ms
    for record in reversed(state.signals.values()):
        if record.signal.received_at < cutoff:
            break
        watched.add(record.signal.token)
    return watched
