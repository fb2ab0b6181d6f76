"""Exit rules as pure functions: stop gain from peak gain, take-profit ladder with moon bag,
DCA, stale trade and max hold. `decide()` is the single decision both the trigger index and
the naive scan call, so the two can only differ in which positions they ask about."""

from __future__ import annotations

import math
from typing import Literal

from msgspec import Struct

from engine.config import AgentConfig, StopLoss
from engine.model import Position

_ZONES = ((25.0, 0.50), (50.0, 0.60), (100.0, 0.70), (200.0, 0.80))


def _exponential_k(p: float) -> float:
    x = p - 20.0
    k = 1.0 - math.exp(-x / 31.25) - 0.12 * math.exp(-(((x - 55.0) / 8.0) ** 2) / 2.0)
    k = min(max(k, 0.0), 0.90)
    if x > 65.0:
        k = min(0.90, k + 0.30 * (1.0 - math.exp(-(x - 65.0) / 80.0)))
    return k


def stop_gain_for_peak(sl: StopLoss, p: float) -> float:
    """S (percent from average entry) for peak gain `p`, before ratcheting. Every mode is
    non-decreasing in `p` (custom levels are validated ascending), which is what lets the
    index evaluate it only at the peaks where the price turns down."""
    d = sl.default_pct
    if p < 0:
        return d
    mode = sl.mode
    if mode == "trailing":
        s = ((1.0 + p / 100.0) * (1.0 - sl.trail_pct / 100.0) - 1.0) * 100.0
        return s if s > d else d
    if mode == "fixed":
        s = d if p < 20 else p - 10.0
    elif mode == "zones":
        if p < 20:
            s = d
        else:
            k = 0.85
            for bound, kk in _ZONES:
                if p <= bound:
                    k = kk
                    break
            s = p * k
    elif mode == "exponential":
        s = d if p <= 20 else p * _exponential_k(p)
    else:  # custom
        s = d
        for level in sl.levels:
            if level.gain_pct <= p:
                s = level.stop_pct
            else:
                break
    return s if s > 0 else d


def peak_gain_pct(position: Position, peak: float) -> float:
    return (peak / position.entry_price_usd - 1.0) * 100.0


def ratcheted_stop_gain(position: Position, peak: float) -> float:
    s = stop_gain_for_peak(position.config.stop_loss, peak_gain_pct(position, peak))
    current = position.stop_gain_pct
    return s if current is None or s > current else current


def stop_price(position: Position, stop_gain: float) -> float:
    return position.entry_price_usd * (1.0 + stop_gain / 100.0)


def dca_level_index(cfg: AgentConfig, dca_count: int) -> int:
    """Level used by the next DCA buy; past the last level the last one repeats."""
    return min(dca_count, len(cfg.dca.levels) - 1)


def dca_trigger_price(position: Position) -> float | None:
    dca = position.config.dca
    if not dca.enabled or position.dca_count >= dca.max_count or not dca.levels:
        return None
    level = dca.levels[dca_level_index(position.config, position.dca_count)]
    return position.entry_price_usd * (1.0 + level.drop_pct / 100.0)


def next_take_profit_price(position: Position) -> float | None:
    tp = position.config.take_profit
    if not tp.enabled or position.tp_done >= len(tp.levels):
        return None
    return position.entry_price_usd * (1.0 + tp.levels[position.tp_done].gain_pct / 100.0)


def moon_bag_trigger_price(position: Position) -> float | None:
    tp = position.config.take_profit
    if not tp.enabled or not tp.moon_bag.enabled or position.moon_bag_amount:
        return None
    return position.entry_price_usd * (1.0 + tp.moon_bag.trigger_gain_pct / 100.0)


def stale_eligible_at(position: Position) -> int | None:
    st = position.config.stale_trade
    return position.opened_at + st.min_hold_s * 1000 if st.enabled else None


def max_hold_at(position: Position) -> int | None:
    mh = position.config.max_hold_s
    return position.opened_at + mh * 1000 if mh else None


def stale_band(position: Position) -> tuple[float, float]:
    st = position.config.stale_trade
    e = position.entry_price_usd
    return e * (1.0 + st.min_pnl_pct / 100.0), e * (1.0 + st.max_pnl_pct / 100.0)


class Decision(Struct, frozen=True, kw_only=True):
    kind: Literal["exit", "take_profit", "dca", "none"]
    reason: str = ""
    sell_amount: int = 0
    tp_levels: int = 0  # take-profit levels consumed by this decision
    moon_bag_amount: int = 0  # > 0: set the moon bag to this amount now
    dca_level: int = -1
    stop_price_usd: float | None = None
    stop_gain_pct: float | None = None


NO_DECISION = Decision(kind="none")


def _take_profit(position: Position, gain: float) -> Decision | None:
    tp = position.config.take_profit
    if not tp.enabled:
        return None
    moon = 0
    if (
        tp.moon_bag.enabled
        and not position.moon_bag_amount
        and gain >= tp.moon_bag.trigger_gain_pct
    ):
        moon = min(
            position.amount, position.original_amount * int(tp.moon_bag.retain_pct * 100) // 10000
        )
    levels = 0
    sell_pct = 0.0
    for level in tp.levels[position.tp_done :]:
        if gain < level.gain_pct:
            break
        levels += 1
        sell_pct += level.sell_pct
    if not levels and not moon:
        return None
    keep = moon or position.moon_bag_amount
    sell = position.original_amount * round(sell_pct * 100) // 10000
    sell = max(0, min(sell, position.amount - keep))
    return Decision(
        kind="take_profit",
        reason="take_profit",
        sell_amount=sell,
        tp_levels=levels,
        moon_bag_amount=moon,
    )


def decide(position: Position, price: float, now: int, peak: float, price_rules: bool) -> Decision:
    """What one position does at `price` and `now`. `price_rules=False` evaluates only the
    time rules (max hold, stale trade), as a clock tick without a new price does.
    Order: stop-loss, max hold, take-profit, stale trade, DCA (API.md, max hold added)."""
    if position.status != "open" or position.in_flight is not None:
        return NO_DECISION
    cfg = position.config
    gain = (price / position.entry_price_usd - 1.0) * 100.0
    if price_rules and cfg.stop_loss.enabled:
        s = ratcheted_stop_gain(position, peak)
        sp = stop_price(position, s)
        if price <= sp:
            return Decision(
                kind="exit",
                reason="stop_loss",
                sell_amount=position.amount,
                stop_price_usd=sp,
                stop_gain_pct=s,
            )
    hold_until = max_hold_at(position)
    if hold_until is not None and now >= hold_until:
        return Decision(kind="exit", reason="max_hold", sell_amount=position.amount)
    if price_rules:
        tp = _take_profit(position, gain)
        if tp is not None:
            return tp
    st = cfg.stale_trade
    if (
        st.enabled
        and now - position.opened_at >= st.min_hold_s * 1000
        and st.min_pnl_pct <= gain <= st.max_pnl_pct
    ):
        return Decision(kind="exit", reason="stale_trade", sell_amount=position.amount)
    if price_rules:
        trigger = dca_trigger_price(position)
        if (
            trigger is not None
            and price <= trigger
            and (
                position.last_dca_at == 0 or now - position.last_dca_at >= cfg.dca.cooldown_s * 1000
            )
        ):
            return Decision(
                kind="dca", reason="dca", dca_level=dca_level_index(cfg, position.dca_count)
            )
    return NO_DECISION
