"""The per-source breaker: an agent stops taking buy signals from a source whose recent trades
break the agent's configured limits (`AgentConfig.source_breaker`), until an operator resets
it or `reset_after_s` passes.

The rules read the PnL (quote atomic) of the source's last `lookback_trades` positions closed
for this agent since the breaker was last reset, oldest first; every comparison is exact
(integers and the limits' decimal values as written)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from msgspec import Struct

from .config import SourceBreaker
from .money import decimal_ratio


class BreakerState(Struct, kw_only=True):
    """One agent's breaker on one source: the recent trade PnLs it judges (quote atomic, oldest
    first), and when and why it tripped (None: armed) or was last reset (epoch ms)."""

    recent: list[int] = []
    tripped_at: int | None = None
    rule: str | None = None
    details: dict[str, Any] = {}
    reset_at: int = 0

    def due_reset(self, cfg: SourceBreaker, now: int) -> bool:
        """A tripped breaker whose `reset_after_s` has passed at `now`."""
        return (
            self.tripped_at is not None
            and cfg.reset_after_s is not None
            and now >= self.tripped_at + cfg.reset_after_s * 1000
        )


def trip_rule(
    cfg: SourceBreaker, recent: list[int], deposited: int
) -> tuple[str, dict[str, Any]] | None:
    """The first limit `recent` (trade PnLs, quote atomic, oldest first) breaks, as (rule,
    details with the figures and the limit), or None. Rules, in this order:
    `consecutive_losses` (that many trades in a row at PnL <= 0, ending with the latest);
    `max_drawdown_pct` (the fall of their cumulative PnL from its high, as a percent of the
    agent's quote deposits `deposited`, reaches the limit; not judged while deposits are 0);
    `min_win_rate_pct` (with at least `min_trades` trades, the share of winners, PnL > 0, is
    under the limit)."""
    if not cfg.enabled or not recent:
        return None
    if cfg.consecutive_losses is not None:
        streak = 0
        for pnl in reversed(recent):
            if pnl > 0:
                break
            streak += 1
        if streak >= cfg.consecutive_losses:
            return "consecutive_losses", {"losses": streak, "limit": cfg.consecutive_losses}
    if cfg.max_drawdown_pct is not None and deposited > 0:
        dd = _drawdown(recent)
        n, d = _ratio(cfg.max_drawdown_pct)
        if dd * 100 * d >= n * deposited:  # dd / deposited >= pct / 100, exactly
            return "max_drawdown_pct", {
                "drawdown": str(dd),
                "deposited": str(deposited),
                "drawdown_pct": round(dd * 100 / deposited, 6),
                "limit": cfg.max_drawdown_pct,
            }
    if cfg.min_win_rate_pct is not None and len(recent) >= cfg.min_trades:
        wins = sum(1 for pnl in recent if pnl > 0)
        n, d = _ratio(cfg.min_win_rate_pct)
        if wins * 100 * d < n * len(recent):  # wins / trades < pct / 100, exactly
            return "min_win_rate_pct", {
                "wins": wins,
                "trades": len(recent),
                "win_rate_pct": round(wins * 100 / len(recent), 6),
                "limit": cfg.min_win_rate_pct,
            }
    return None


def _drawdown(pnls: list[int]) -> int:
    """The largest fall of the cumulative sum of `pnls` from a high (0 counts as one)."""
    total = peak = dd = 0
    for x in pnls:
        total += x
        if total > peak:
            peak = total
        elif peak - total > dd:
            dd = peak - total
    return dd


# A limit as the decimal it is written as, parsed once per distinct value.
_ratio = lru_cache(maxsize=256)(decimal_ratio)
