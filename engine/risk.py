"""Pre-trade checks and sizing for a buy signal, as pure functions of the agent's state.

Each check returns a skip reason (a stable snake_case string clients see in
`executions[].reason`) or None when the agent may buy. Amounts are int atomic units of the
agent's quote; nothing here raises."""

from __future__ import annotations

from collections.abc import Callable

from .config import AgentConfig
from .model import Agent, Signal
from .money import decimal_ratio, pct_of

DAY_MS = 86_400_000


def filter_reason(
    cfg: AgentConfig,
    signal: Signal,
    liquidity_usd: float | None,
    check_liquidity: bool = True,
    risk_score: Callable[[], int] | None = None,
) -> str | None:
    """Signal-level filters: strength, type, token allow/deny, and (for buys) liquidity and risk.
    `liquidity_usd`: the token's liquidity in USD, None when unknown; `check_liquidity=False`
    skips the buy-only checks (sells); `risk_score`: the token's score 0-100, computed only if
    the agent sets `max_risk_score`. Returns the first failing check's reason
    (strength_below_min, type_filtered, token_not_allowed, token_denied, liquidity_unknown,
    liquidity_below_min, risk_score_above_max) or None."""
    f = cfg.signals
    if signal.strength < f.min_strength:
        return "strength_below_min"
    if f.types and signal.type not in f.types:
        return "type_filtered"
    if f.token_filter == "allow" and signal.token not in f.tokens:
        return "token_not_allowed"
    if f.token_filter == "deny" and signal.token in f.tokens:
        return "token_denied"
    if check_liquidity and f.min_liquidity_usd is not None:
        if liquidity_usd is None:
            return "liquidity_unknown"
        if liquidity_usd < f.min_liquidity_usd:
            return "liquidity_below_min"
    if check_liquidity and f.max_risk_score is not None and risk_score is not None:
        if risk_score() > f.max_risk_score:
            return "risk_score_above_max"
    return None


def limit_reason(
    agent: Agent, token: str, open_count: int, token_count: int, now: int
) -> str | None:
    """Position-count limits, per-token cooldown and the daily loss limit. `open_count` and
    `token_count`: the agent's open positions in all and in `token`; `now`: epoch ms. The daily
    loss is the day's realized loss against `daily_loss_limit_pct` (percent 0-100, exact as
    written) of the UTC day's starting equity. Returns max_open_positions,
    max_positions_per_token, token_cooldown, daily_loss_limit or None."""
    lim = agent.config.limits
    if open_count >= lim.max_open_positions:
        return "max_open_positions"
    if token_count >= lim.max_positions_per_token:
        return "max_positions_per_token"
    last_exit = agent.last_exit_at.get(token)
    if (
        lim.token_cooldown_s
        and last_exit is not None
        and now - last_exit < lim.token_cooldown_s * 1000
    ):
        return "token_cooldown"
    perf = agent.perf
    if (
        lim.daily_loss_limit_pct is not None
        and perf.day == now // DAY_MS
        and perf.day_start_equity > 0
    ):
        n, d = decimal_ratio(lim.daily_loss_limit_pct)
        if -perf.day_realized * 100 * d >= n * perf.day_start_equity:
            return "daily_loss_limit"
    return None


def size_buy(cfg: AgentConfig, available: int, token_cost: int) -> tuple[int, str | None]:
    """Quote amount to spend, or (0, reason). `available` is the agent's free quote balance and
    `token_cost` what it already has in the token (open cost plus reservations, for
    `max_per_token`), both quote atomic units. Returns (amount > 0, None), rounded down, or
    (0, no_tier_for_balance | max_per_token | insufficient_balance | amount_zero)."""
    s = cfg.sizing
    if s.mode == "fixed":
        amount = int(s.amount)
    elif s.mode == "balance_pct":
        amount = pct_of(available, s.balance_pct)
    else:
        amount = 0
        for tier in s.tiers:
            if available >= int(tier.min_balance):
                amount = int(tier.amount)
        if amount == 0:
            return 0, "no_tier_for_balance"
    spendable = available - int(s.min_reserve)
    if s.max_per_token is not None:
        amount = min(amount, int(s.max_per_token) - token_cost)
        if amount <= 0:
            return 0, "max_per_token"
    if spendable <= 0 or amount > spendable:
        return 0, "insufficient_balance"
    if amount <= 0:
        return 0, "amount_zero"
    return amount, None
