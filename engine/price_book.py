"""The price book's bounds and token decimals: which prices must be kept (held tokens, agents'
quotes, the watchlist), room for a new token's first price in a full book (stale prices nobody
needs are evicted), and decimals that must never change under held amounts. Functions of the
engine's state, called only from its transitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev
from .assets import KNOWN_DECIMALS, quote_mint

if TYPE_CHECKING:
    from .state import EngineState


def is_held(state: EngineState, token: str) -> bool:
    """Whether a live position holds (or is buying) `token`, it is an agent's quote, or it
    is in the watchlist: its price is needed whatever the bound. O(agents)."""
    if token in state.watchlist:
        return True
    return any(
        e.by_token.get(token, 0) > 0 for e in (b.exposure for b in state.books.values())
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
    stale = [m for m, t in state.prices.items() if t.ts < oldest and m not in watched]
    if not stale:
        state._no_room_until = now + 1000
        return False
    for mint in stale:
        del state.prices[mint]
        state.index.forget(mint)
        if mint not in KNOWN_DECIMALS:
            state.decimals.pop(mint, None)
        state._emit(ev.PriceEvicted(ts=now, token=mint))
    return True


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
    the watchlist, and tokens named by signals received in the last `recent_signal_ms`.
    O(agents + recent signals)."""
    watched = set(state.watchlist)
    watched.update(quote_mint(b.agent.quote) for b in state.books.values())
    for e in (b.exposure for b in state.books.values()):
        watched.update(t for t, n in e.by_token.items() if n > 0)
    cutoff = now - recent_signal_ms
    for record in reversed(state.signals.values()):
        if record.signal.received_at < cutoff:
            break
        watched.add(record.signal.token)
    return watched
