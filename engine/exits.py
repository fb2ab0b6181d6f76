"""Exit rules as pure functions: stop gain from peak gain, take-profit ladder with moon bag,
DCA, stale trade and max hold. `decide()` is the single decision both the trigger index and
the naive scan call, so the two can only differ in which positions they ask about."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Literal

from msgspec import Struct

from .config import AgentConfig, StopLoss
from .model import Position
from .money import (
    exact,
    level_price,
    level_price_nearest,
    pct_of,
    pct_sum,
    ratio_of_sum,
    to_float_up,
)

_ZONES = ((25, Fraction(1, 2)), (50, Fraction(3, 5)), (100, Fraction(7, 10)), (200, Fraction(4, 5)))
_K_TOP = Fraction(17, 20)
_NEAR = 1.0 + 1e-9  # float estimates are ~1e-12 off: closer than this, decide exactly
_BIAS = 1.0 + 1e-12  # see stop_gain_estimate


def _exponential_k(p: float) -> float:
    x = p - 20.0
    k = 1.0 - math.exp(-x / 31.25) - 0.12 * math.exp(-(((x - 55.0) / 8.0) ** 2) / 2.0)
    k = min(max(k, 0.0), 0.90)
    if x > 65.0:
        k = min(0.90, k + 0.30 * (1.0 - math.exp(-(x - 65.0) / 80.0)))
    return k


def _stop_gain(sl: StopLoss, p: Any, num: Callable[[float], Any]) -> Any:
    """S for peak gain `p` in the number type `num` makes of a configured value: `exact`
    (Fraction, for decisions) or `float` (the index's estimate). One table of modes for both."""
    d = num(sl.default_pct)
    mode = sl.mode
    if mode == "trailing":
        # The trail follows the peak even below the entry (the peak starts at the market price
        # the buy was decided on, which slippage puts below the fill): no `p < 0` rule here.
        s = ((1 + p / 100) * (1 - num(sl.trail_pct) / 100) - 1) * 100
    elif p < 0:
        return d
    elif mode == "fixed":
        s = d if p < 20 else p - 10
    elif mode == "zones":
        if p < 20:
            s = d
        else:
            k = _K_TOP
            for bound, kk in _ZONES:
                if p <= bound:
                    k = kk
                    break
            s = p * k
    elif mode == "exponential":
        # The curve is transcendental: k is a float, applied exactly to the exact p.
        s = d if p <= 20 else p * num(_exponential_k(float(p)))
    else:  # custom
        s = d
        for level in sl.levels:
            if num(level.gain_pct) <= p:
                s = num(level.stop_pct)
            else:
                break
    return s if s > 0 or (mode == "trailing" and s > d) else d


def stop_gain_for_peak(sl: StopLoss, p: float | Fraction) -> Fraction:
    """S (percent from average entry) for peak gain `p` (percent), before ratcheting, exact:
    `p` and every configured percentage are taken as written, so a peak exactly on a zone or
    level boundary lands in the level it names. Every mode is non-decreasing in `p` (custom
    levels are validated ascending), which lets the index evaluate it only where the price turns
    down."""
    result: Fraction = _stop_gain(sl, p if isinstance(p, Fraction) else exact(p), exact)
    return result


def peak_gain_pct(position: Position, peak: float) -> Fraction:
    """(peak / entry − 1) × 100, exact."""
    return (exact(peak) / exact(position.entry_price_usd) - 1) * 100


def _dormant(sl: StopLoss, entry: float, peak: float) -> bool:
    """Whether the peak gain is clearly (far beyond float error) below the first threshold at
    which a non-trailing mode moves S off `default_pct`: then S = default_pct exactly, with no
    exact arithmetic. New positions and quiet markets take this path."""
    if sl.mode == "trailing":
        return False
    first = sl.levels[0].gain_pct if sl.mode == "custom" and sl.levels else 20.0
    return (peak / entry - 1.0) * 100.0 < first - 1e-9 * (1.0 + abs(first))


def ratcheted_stop_gain(position: Position, peak: float) -> Fraction:
    """The position's stop gain S at `peak`, never below the S it already reached."""
    sl = position.config.stop_loss
    if _dormant(sl, position.entry_price_usd, peak):
        s = exact(sl.default_pct)
    else:
        s = stop_gain_for_peak(sl, peak_gain_pct(position, peak))
    current = position.stop_gain_pct
    # The held S is stored as a float: when the exact S rounds to it (or above), the exact
    # value wins, so the result never depends on when the float was stored.
    if current is None or float(s) >= current:
        return s
    return exact(current)


def stop_gain_estimate(position: Position, peak: float) -> float:
    """`ratcheted_stop_gain` in floats, never below the exact value (a hair above it): for the
    trigger index's keys and the quick no-trigger test, never for a decision."""
    # S is non-decreasing in the peak gain: biasing the float gain up (far beyond its rounding
    # error) makes the estimate never lower than the exact S, also across a mode's thresholds
    # (a peak of exactly +20% must not estimate as 19.999999999999996).
    ratio = peak / position.entry_price_usd * _BIAS
    s: float = _stop_gain(position.config.stop_loss, (ratio - 1.0) * 100.0, float)
    current = position.stop_gain_pct
    return s if current is None or s > current else current


def stop_price_estimate(position: Position, stop_gain: float) -> float:
    """The stop's trigger price in USD for stop gain `stop_gain` (percent from the average entry,
    e.g. -32 or 15.5), in floats: entry × (1 + S/100). For the index's keys and the quick
    no-trigger test only; decisions use `stop_price`."""
    return position.entry_price_usd * (1.0 + stop_gain / 100.0)


def exact_stop_price(position: Position, stop_gain: Fraction | float) -> Fraction:
    """The stop's level in USD, exact: entry × (1 + S/100) for stop gain `stop_gain` (percent from
    the average entry; a float is taken as written). Returns a Fraction."""
    s = stop_gain if isinstance(stop_gain, Fraction) else exact(stop_gain)
    return exact(position.entry_price_usd) * (1 + s / 100)


def stop_price(position: Position, stop_gain: Fraction | float) -> float:
    """The stop's trigger price, rounded up (toward triggering: it fires at price <= this)."""
    return to_float_up(exact_stop_price(position, stop_gain))


def stop_trigger_price(position: Position) -> float | None:
    """The stop level as `decide` computes it, for a refreshed live position (peak and
    ratcheted S materialized), shown as the float nearest the exact level (0.000027, not
    0.000027000000000000002): never above the trigger `decide` uses (the same exact level
    rounded up), so a tick at the shown price sells. None without a stop."""
    if not position.config.stop_loss.enabled or position.stop_gain_pct is None:
        return None
    level = exact_stop_price(position, ratcheted_stop_gain(position, position.peak_price_usd))
    return level.numerator / level.denominator


def dca_level_index(cfg: AgentConfig, dca_count: int) -> int:
    """Level used by the next DCA buy; past the last level the last one repeats."""
    return min(dca_count, len(cfg.dca.levels) - 1)


def dca_trigger_price(position: Position) -> float | None:
    """The USD price at or below which the position's next DCA buy triggers (its level's `drop_pct`
    below the average entry, rounded toward triggering), or None when DCA is off, has no levels
    or `max_count` buys were made."""
    dca = position.config.dca
    if not dca.enabled or position.dca_count >= dca.max_count or not dca.levels:
        return None
    level = dca.levels[dca_level_index(position.config, position.dca_count)]
    return level_price(position.entry_price_usd, level.drop_pct, above=False)


def next_take_profit_price(position: Position) -> float | None:
    """The USD price at or above which the position's next take-profit level triggers (its
    `gain_pct` above the average entry, rounded toward triggering), or None when take-profit is
    off or every level was taken."""
    tp = position.config.take_profit
    if not tp.enabled or position.tp_done >= len(tp.levels):
        return None
    return level_price(position.entry_price_usd, tp.levels[position.tp_done].gain_pct, above=True)


def next_take_profit_shown(position: Position) -> float | None:
    """The next take-profit level as shown to a client: the float nearest its exact level in USD
    (0.0000303, not the one-ulp-lower float `next_take_profit_price` compares with). Never below
    that trigger, so a tick at the shown price triggers it. None as in next_take_profit_price."""
    tp = position.config.take_profit
    if not tp.enabled or position.tp_done >= len(tp.levels):
        return None
    return level_price_nearest(position.entry_price_usd, tp.levels[position.tp_done].gain_pct)


def moon_bag_trigger_price(position: Position) -> float | None:
    """The USD price at or above which the moon bag is set aside (`trigger_gain_pct` above the
    average entry), or None when take-profit or the moon bag is off, or the bag is already set."""
    tp = position.config.take_profit
    if not tp.enabled or not tp.moon_bag.enabled or position.moon_bag_amount:
        return None
    return level_price(position.entry_price_usd, tp.moon_bag.trigger_gain_pct, above=True)


def stale_eligible_at(position: Position) -> int | None:
    """Epoch ms from which the stale-trade rule may close the position (`opened_at` +
    `min_hold_s`), or None when the rule is off."""
    st = position.config.stale_trade
    return position.opened_at + st.min_hold_s * 1000 if st.enabled else None


def max_hold_at(position: Position) -> int | None:
    """Epoch ms at which the position is closed for max hold (`opened_at` + `max_hold_s`), or None
    without a max hold."""
    mh = position.config.max_hold_s
    return position.opened_at + mh * 1000 if mh else None


def stale_band(position: Position) -> tuple[float, float]:
    """[low, high] prices of the stale-trade band, each rounded outward (toward triggering)."""
    st = position.config.stale_trade
    e = position.entry_price_usd
    return level_price(e, st.min_pnl_pct, above=True), level_price(e, st.max_pnl_pct, above=False)


class Decision(Struct, frozen=True, kw_only=True):
    """What `decide` says one position does now. `kind`: exit (sell `sell_amount` token atomic
    units for `reason`), take_profit (sell `sell_amount`, consuming `tp_levels` levels and
    setting the moon bag to `moon_bag_amount` atomic units when > 0), dca (buy at level
    `dca_level`), none. A stop-loss exit carries the stop's trigger price (`stop_price_usd`,
    USD) and stop gain (`stop_gain_pct`, percent from entry)."""

    kind: Literal["exit", "take_profit", "dca", "none"]
    reason: str = ""
    sell_amount: int = 0
    tp_levels: int = 0  # take-profit levels consumed by this decision
    moon_bag_amount: int = 0  # > 0: set the moon bag to this amount now
    dca_level: int = -1
    stop_price_usd: float | None = None
    stop_gain_pct: float | None = None


NO_DECISION = Decision(kind="none")


def _take_profit(position: Position, price: float) -> Decision | None:
    """Levels (and the moon-bag trigger) at or below `price`, as ONE sell of their summed
    `sell_pct` of the original amount, exact and rounded down. The decision that takes the last
    level of a ladder summing to >= 100% sells everything the moon bag does not keep."""
    tp = position.config.take_profit
    if not tp.enabled:
        return None
    entry = position.entry_price_usd
    moon = 0
    if (
        tp.moon_bag.enabled
        and not position.moon_bag_amount
        and price >= level_price(entry, tp.moon_bag.trigger_gain_pct, above=True)
    ):
        moon = min(position.amount, pct_of(position.original_amount, tp.moon_bag.retain_pct))
    pcts: list[float] = []
    for level in tp.levels[position.tp_done :]:
        if price < level_price(entry, level.gain_pct, above=True):
            break
        pcts.append(level.sell_pct)
    if not pcts and not moon:
        return None
    keep = moon or position.moon_bag_amount
    last = position.tp_done + len(pcts) == len(tp.levels)
    if last and pct_sum(lv.sell_pct for lv in tp.levels) >= 100:
        sell = position.amount - keep
    else:
        sell = ratio_of_sum(position.original_amount, pcts) if pcts else 0
    sell = max(0, min(sell, position.amount - keep))
    return Decision(
        kind="take_profit",
        reason="take_profit",
        sell_amount=sell,
        tp_levels=len(pcts),
        moon_bag_amount=moon,
    )


def decide(
    position: Position,
    price: float,
    now: int,
    peak: float,
    price_rules: bool,
    in_flight: bool = False,
) -> Decision:
    """What one position does at `price` and `now`. `price_rules=False` evaluates only the
    time rules (max hold, stale trade), as a clock tick without a new price does.
    Order: stop-loss, max hold, take-profit, stale trade, DCA (API.md, max hold added).
    Every crossing compares `price` with a trigger price computed exactly from the entry
    (engine/money.py), so a price exactly on a configured level triggers it. `in_flight=True`
    asks what the position would do if its order in flight were settled (a pending exit)."""
    if not in_flight and (position.status != "open" or position.in_flight is not None):
        return NO_DECISION
    cfg = position.config
    if (
        price_rules
        and cfg.stop_loss.enabled
        and price <= stop_price_estimate(position, stop_gain_estimate(position, peak)) * _NEAR
    ):
        s = ratcheted_stop_gain(position, peak)
        sp = stop_price(position, s)
        if price <= sp:
            return Decision(
                kind="exit",
                reason="stop_loss",
                sell_amount=position.amount,
                stop_price_usd=sp,
                stop_gain_pct=float(s),
            )
    hold_until = max_hold_at(position)
    if hold_until is not None and now >= hold_until:
        return Decision(kind="exit", reason="max_hold", sell_amount=position.amount)
    if price_rules:
        tp = _take_profit(position, price)
        if tp is not None:
            return tp
    if cfg.stale_trade.enabled and now - position.opened_at >= cfg.stale_trade.min_hold_s * 1000:
        low, high = stale_band(position)
        if low <= price <= high:
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
