"""What every buy shares, whether a signal's buy taken at once or a resting entry whose price
came: the checks that may skip it (each a stable snake_case reason clients see in
`executions[].reason`) and the opening of its position with the entry order."""

from __future__ import annotations

from fractions import Fraction

from . import events as ev
from .assets import PAPER_VENUE, market_parts, quote_mint, venue_exchange
from .model import Agent, Attribution, Order, Position, Signal
from .money import exact
from .risk import limit_reason
from .state import EngineState


def standing_reason(state: EngineState, agent: Agent, token: str) -> str | None:
    """Checks that do not depend on the market: the token is the agent's quote
    (token_is_quote), buys halted by the operator (halted) or paused by the daemon (its
    reason, e.g. store_unavailable), the agent paused (agent_paused), a live agent's wallet
    locked (wallet_locked). None when none applies."""
    if token == quote_mint(agent.quote):  # buying the quote with itself
        return "token_is_quote"
    venue = venue_reason(state, agent, token)
    if venue is not None:
        return venue
    if state.halted_buys:
        return "halted"
    if state.buys_paused_reason is not None:
        return state.buys_paused_reason
    if agent.status != "active":
        return "agent_paused"
    if agent.wallet_id is not None and agent.venue != PAPER_VENUE:
        if agent.wallet_id not in state.unlocked_wallets:
            return "wallet_locked"
    return None


def venue_reason(state: EngineState, agent: Agent, token: str) -> str | None:
    """Whether the agent's venue can trade `token`: an exchange venue ("ccxt:<account>") trades
    its exchange's markets quoted in the agent's quote (else venue_cannot_trade,
    quote_mismatch); paper trades mints and markets; any other venue (Jupiter) trades mints
    only (venue_cannot_trade)."""
    parts = market_parts(token)
    if venue_exchange(agent.venue) is not None:
        if parts is None or state.venue_exchanges.get(agent.venue) != parts[0]:
            return "venue_cannot_trade"
        if parts[2] != agent.quote.upper():
            return "quote_mismatch"
        return None
    if parts is not None and agent.venue != PAPER_VENUE:
        return "venue_cannot_trade"
    return None


def lot_reason(
    state: EngineState, agent: Agent, token: str, amount: int, price: float
) -> str | None:
    """A buy of `amount` quote atomic units of an exchange market at `price` (USD): skipped
    `below_venue_minimum` when it is under the market's least notional or buys less than its
    least amount (InstrumentRules); None otherwise, and always for a mint."""
    rules = state.instruments.get(token)
    if rules is None:
        return None
    market_price = state.market_price(token, price)
    quote_usd = state.quote_usd(agent.quote)
    parts = market_parts(token)
    market_quote_usd = state.quote_usd(parts[2]) if parts is not None else None
    if market_price is None or not quote_usd or not market_quote_usd:
        return None  # cannot value it here: the venue decides
    # The buy's cost in the market's quote currency, exact.
    cost = Fraction(amount, 10**agent.quote_decimals) * exact(quote_usd) / exact(market_quote_usd)
    return "below_venue_minimum" if rules.buy_below_min(cost, market_price) else None


def market_reason(state: EngineState, agent: Agent, token: str, now: int) -> str | None:
    """Checks on the market and the agent's limits at `now` (epoch ms): no price (no_price),
    one older than `max_price_age_ms` (price_stale), sources diverging (price_divergence), no
    quote price (no_quote_price), then the position-count limits, cooldown and daily loss limit
    (see risk.limit_reason). None when none applies."""
    tick = state.prices.get(token)
    if tick is None:
        return "no_price"
    if now - tick.ts > state.max_price_age_ms:
        return "price_stale"
    if state.price_policy.block_buys_on_divergence and state.diverged_now(token):
        return "price_divergence"
    if not state.quote_usd(agent.quote):
        return "no_quote_price"
    exposure = state.books[agent.id].exposure
    return limit_reason(agent, token, exposure.open, exposure.by_token[token], now)


def ensure_decimals(state: EngineState, token: str, now: int) -> None:
    """Neither a tick, a signal nor the instrument's market named the token's decimals: fix
    the configured default for it, and say so (alert decimals_defaulted)."""
    if token in state.decimals:
        return
    state.decimals[token] = state.default_decimals
    state._emit(
        ev.Alert(
            ts=now,
            code="decimals_defaulted",
            message="token decimals unknown: using the configured default",
            details={"token": token, "decimals": state.default_decimals},
        )
    )


def open_entry(
    state: EngineState,
    agent: Agent,
    token: str,
    symbol: str | None,
    amount: int,
    now: int,
    *,
    signal_id: str,
    signal_type: str,
    expires_at: int,
    limit_price_usd: float | None = None,
    latency_ms: float | None = None,
    opened_by: Attribution | None = None,
) -> tuple[Position, Order]:
    """Open a position in `token` and place its entry buy of `amount` quote atomic units, at the
    token's last price (the decision price: the trailing peak starts there). The caller has
    reserved `amount` and committed it to the token's exposure; this counts the position
    open. The order is not carried out after `expires_at` (epoch ms); a limit entry's order
    carries its `limit_price_usd`, and `latency_ms` (from the signal's receipt) for its
    execution record; `opened_by` the signal the position is attributed to."""
    ensure_decimals(state, token, now)
    state.books[agent.id].exposure.opened(token, 0)
    p = Position(
        id=state._id("pos", now),
        seq=state.id_seq,
        agent_id=agent.id,
        token=token,
        symbol=symbol,
        decimals=state.token_decimals(token),
        config=agent.config,
        signal_id=signal_id,
        opened_by=opened_by,
    )
    state._add_position(p)
    order = state._new_order(
        agent,
        p,
        "buy",
        "entry",
        amount,
        f"signal:{signal_type}" if signal_type else "signal",
        now,
        None,
        price=state.prices[token].price_usd,
        signal_id=signal_id,
        expires_at=expires_at,
        limit_price_usd=limit_price_usd,
        signal_latency_ms=latency_ms,
    )
    return p, order


def attribution(state: EngineState, signal: Signal) -> Attribution:
    """What a position opened by `signal` records of it, with the token's last price now."""
    tick = state.prices.get(signal.token)
    return Attribution(
        signal_id=signal.id,
        source=signal.source,
        type=signal.type,
        strength=signal.strength,
        key_id=signal.key_id,
        received_at=signal.received_at,
        price_usd=tick.price_usd if tick is not None else None,
    )
