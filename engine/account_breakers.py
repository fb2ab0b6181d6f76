"""Account breakers: portfolio-level rules that halt buys on their own (docs/breakers.md).

`AccountBreakers` is the pure rule state: it is fed numbers (an equity, a closed position's exit
reason, an order's outcome, feed ages) with the time they hold at, and answers a `BreakerTrip`
when a rule trips. `AccountEquity` values the whole account in USD, exactly, from the engine's
state. No I/O, no await, no clock read: `now` (epoch ms) always comes in as an argument.

Where each rule is evaluated (chosen so the daemon and `tradingd replay` decide alike, and so
no tick pays for it):
- `equity_drawdown_pct`: after each settled order (fill or failure: where money moves) and on
  clock turns (where prices alone may have moved the equity). Not per tick: a tick would have to
  revalue the account on the hot path. The held amount per token is kept incrementally from
  fills, so one evaluation costs O(agents + tokens held), never O(positions). A clock turn is a
  record in a recording (the recorder writes each one), so a recording replays to the same
  evaluations.
- `consecutive_stop_outs` and `order_failure_rate`: on the settlement that closes a position or
  ends an order (event-driven: the same in the daemon and in a replay).
- `stale_feeds_s`: on clock turns, from the engine clock and the price book's last admitted tick
  of each token with open positions."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from . import events as ev
from .lifecycle import HOLDING
from .money import decimal_ratio, exact

if TYPE_CHECKING:
    from .book import AgentBook
    from .model import Balance
    from .state import EngineState

DAY_MS = 86_400_000


class BreakerRules(Struct, frozen=True, kw_only=True):
    """The account breakers configured; a rule left None is off. `equity_drawdown_pct`: the
    account's USD equity falls MORE than this percent below the UTC day's peak;
    `consecutive_stop_outs`: this many positions in a row (account-wide) closed by their
    stop-loss; `stale_feeds_s`: a token with open positions has had no admitted tick for MORE
    than this many seconds; `order_failure_rate`: of the last `order_failure_window` orders that
    ended (filled or failed), at least this percent failed, once `min_orders` have ended;
    `flatten`: a trip also sells every open position."""

    equity_drawdown_pct: float | None = None
    consecutive_stop_outs: int | None = None
    stale_feeds_s: int | None = None
    order_failure_rate: float | None = None
    order_failure_window: int = 20
    min_orders: int = 10
    flatten: bool = False

    @property
    def any(self) -> bool:
        """Some rule is on."""
        return (
            self.equity_drawdown_pct is not None
            or self.consecutive_stop_outs is not None
            or self.stale_feeds_s is not None
            or self.order_failure_rate is not None
        )


class BreakerTrip(Struct, frozen=True, kw_only=True):
    """A rule tripped at `at` (epoch ms) with the numbers that tripped it and its threshold."""

    rule: str
    at: int
    details: dict[str, Any]


def usd_text(x: Fraction) -> str:
    """A USD amount as exact decimal text, rounded toward -inf to 1e-6 (for people, never maths)."""
    micro = x.numerator * 10**6 // x.denominator
    return str(Decimal(micro).scaleb(-6))


def pct_float(x: Fraction) -> float:
    """A percentage for display: the nearest float of the exact value."""
    return x.numerator / x.denominator


class AccountBreakers:
    """The breakers' state: the UTC day's equity peak, the stop-out streak, the window of order
    outcomes, the trip. Once tripped, no rule is evaluated again until `reset`, so a trip is
    said once, not on every later tick."""

    def __init__(self, rules: BreakerRules | None = None) -> None:
        self.rules = rules or BreakerRules()
        self.tripped: BreakerTrip | None = None
        self.day: int | None = None  # the UTC day (epoch ms // DAY_MS) of `peak`
        self.peak: Fraction | None = None  # USD
        self.floor: Fraction | None = None  # USD: the equity below which the drawdown trips
        self.equity: Fraction | None = None  # USD, at the last evaluation
        self.equity_at = 0
        self.streak = 0
        self.outcomes: deque[bool] = deque(maxlen=self.rules.order_failure_window)  # True: failed
        self.stale_from = 0  # ms: feed ages count from here at the earliest (set by a reset)

    # -- rules --------------------------------------------------------------------------------

    def on_equity(self, equity: Fraction, now: int) -> BreakerTrip | None:
        """The account's USD equity is `equity` at `now`: a new day's first value (or the first
        after a reset) is the day's peak; trips when it is more than `equity_drawdown_pct`
        below the peak."""
        self.equity, self.equity_at = equity, now
        day = now // DAY_MS
        limit = self.rules.equity_drawdown_pct
        if self.peak is None or self.day != day or equity > self.peak:
            self.day, self.peak = day, equity
            # more than `limit` % below the peak <=> below this (exact; one comparison a time)
            self.floor = equity * (1 - exact(limit) / 100) if limit is not None else None
        if self.floor is None or self.tripped is not None or self.peak <= 0:
            return None
        if equity >= self.floor:
            return None
        drawdown = self.drawdown_pct()
        assert drawdown is not None and limit is not None
        return self._trip(
            "equity_drawdown",
            now,
            {
                "equity_usd": usd_text(equity),
                "peak_usd": usd_text(self.peak),
                "drawdown_pct": pct_float(drawdown),
                "threshold_pct": limit,
            },
        )

    def drawdown_pct(self) -> Fraction | None:
        """How far the last equity is below the day's peak, percent, exact (None before one)."""
        if self.peak is None or self.equity is None or self.peak <= 0:
            return None
        return (self.peak - self.equity) * 100 / self.peak

    def on_position_closed(self, exit_reason: str | None, now: int) -> BreakerTrip | None:
        """A position closed for `exit_reason`: a stop-loss lengthens the streak, anything else
        ends it. Trips when the streak reaches `consecutive_stop_outs`."""
        self.streak = self.streak + 1 if exit_reason == "stop_loss" else 0
        limit = self.rules.consecutive_stop_outs
        if limit is None or self.tripped is not None or self.streak < limit:
            return None
        return self._trip("consecutive_stop_outs", now, {"streak": self.streak, "threshold": limit})

    def on_order_done(self, failed: bool, now: int) -> BreakerTrip | None:
        """An order ended (filled, or `failed`). Trips when, over the window's last orders (at
        least `min_orders`), the failed share is at least `order_failure_rate` percent."""
        self.outcomes.append(failed)
        limit = self.rules.order_failure_rate
        n = len(self.outcomes)
        if limit is None or self.tripped is not None or n < self.rules.min_orders:
            return None
        failures = sum(self.outcomes)
        rate = Fraction(failures * 100, n)
        if rate < exact(limit):
            return None
        return self._trip(
            "order_failure_rate",
            now,
            {
                "failed": failures,
                "orders": n,
                "rate_pct": pct_float(rate),
                "threshold_pct": limit,
                "window": self.rules.order_failure_window,
            },
        )

    def oldest_feed(self, last_ticks: Iterable[tuple[str, int]], now: int) -> tuple[str, int]:
        """(token, age ms) of the oldest of `last_ticks` ((token, last admitted tick ms));
        ages count from the last reset at the earliest; of equal ages, the first token in
        `last_ticks`. ("", 0) when there is none."""
        oldest, age = "", 0
        for token, ts in last_ticks:
            a = max(now - max(ts, self.stale_from), 0)
            if not oldest or a > age:
                oldest, age = token, a
        return oldest, age

    def on_feeds(self, last_ticks: Iterable[tuple[str, int]], now: int) -> BreakerTrip | None:
        """The tokens with open positions and their last admitted tick (ms): trips when one has
        had none for more than `stale_feeds_s`."""
        limit = self.rules.stale_feeds_s
        if limit is None or self.tripped is not None:
            return None
        token, age = self.oldest_feed(last_ticks, now)
        if age <= limit * 1000:
            return None
        return self._trip(
            "stale_feeds", now, {"token": token, "age_s": age / 1000, "threshold_s": limit}
        )

    def _trip(self, rule: str, now: int, numbers: dict[str, Any]) -> BreakerTrip:
        self.tripped = BreakerTrip(rule=rule, at=now, details={"rule": rule, **numbers})
        return self.tripped

    def reset(self, now: int) -> BreakerTrip | None:
        """An admin's reset: the trip clears and every rule starts over (the day's peak is the
        next equity, the streak and the order window empty, feed ages count from now).
        Returns the trip that was cleared, if any."""
        was = self.tripped
        self.tripped = None
        self.peak = self.day = self.floor = None
        self.streak = 0
        self.outcomes.clear()
        self.stale_from = now
        return was

    def rebase(self) -> None:
        """Money left the account without a loss (an agent deleted with its balance): the
        day's peak restarts from the next equity, so the withdrawal is not a drawdown."""
        self.peak = self.day = self.floor = None

    def restore_trip(self, trip: BreakerTrip) -> None:
        """A trip recorded before a restart (the halt persisted with it) holds again."""
        self.tripped = trip


class AccountEquity:
    """The account's equity in USD, exact: every agent's quote balance (reserved included: a
    buy in flight has not spent it) plus the tokens held by positions not closed, each at its
    last price. The held amount per token is kept from fills (`on_fill`), computed from the
    positions once on first use (after a restore too). Each asset's worth is kept with the
    price and amount it was computed at, and the total moves by the difference, so an
    evaluation after one fill computes one or two fractions, not one per asset held."""

    def __init__(self, state: EngineState) -> None:
        self.state = state
        self.held: dict[str, list[int]] | None = None  # token -> [atomic amount, decimals]
        # ("q", quote) or ("t", token) -> (price, amount, worth USD) as last computed
        self._worth: dict[tuple[str, str], tuple[float, int, Fraction]] = {}
        self._total = Fraction(0)
        # the books as last seen, and their quote balances by quote: (decimals, balances)
        self._books: list[AgentBook] = []
        self._quote_balances: dict[str, tuple[int, list[Balance]]] = {}

    def _count(self) -> dict[str, list[int]]:
        held: dict[str, list[int]] = {}
        for book in self.state.books.values():
            for p in book.live.values():
                if p.status in HOLDING and p.amount:
                    held.setdefault(p.token, [0, p.decimals])[0] += p.amount
        return held

    def on_fill(self, side: str, token: str, amount: int, decimals: int) -> None:
        """A fill bought (or sold) `amount` atomic units of `token` for a position."""
        if self.held is None:
            return  # counted from the positions at first use
        entry = self.held.setdefault(token, [0, decimals])
        entry[0] += amount if side == "buy" else -amount
        if entry[0] == 0:
            del self.held[token]

    def usd(self) -> Fraction | None:
        """The equity now, USD, exact; None when a quote or a held token has no price (an
        unknown value must not look like a drawdown)."""
        if self.held is None:
            self.held = self._count()
            self._worth.clear()
            self._total = Fraction(0)
        state = self.state
        books = list(state.books.values())
        if books != self._books:  # an agent created or deleted (an identity compare, in C)
            self._books = books
            self._quote_balances = {}
            for book in books:
                agent = book.agent
                held = self._quote_balances.setdefault(agent.quote, (agent.quote_decimals, []))
                held[1].append(book.balances[agent.quote])  # changed in place by the ledger
        quotes = self._quote_balances
        for quote, (decimals, balances) in quotes.items():
            amount = sum(b.total for b in balances)
            if not self._add(("q", quote), state.quote_usd(quote), amount, decimals):
                return None
        for token, (amount, decimals) in self.held.items():
            if not self._add(("t", token), state.price_usd(token), amount, decimals):
                return None
        if len(self._worth) > len(quotes) + len(self.held):  # an asset left the account
            for key in [
                k for k in self._worth if (quotes if k[0] == "q" else self.held).get(k[1]) is None
            ]:
                self._total -= self._worth.pop(key)[2]
        return self._total

    def _add(self, key: tuple[str, str], price: float | None, amount: int, decimals: int) -> bool:
        """Bring the asset's worth up to its price and amount now; False without a price."""
        if not price:
            return False
        held = self._worth.get(key)
        if held is None or held[0] != price or held[1] != amount:
            n, d = decimal_ratio(price)
            worth = Fraction(n * amount, d * 10**decimals)
            self._total += worth - held[2] if held is not None else worth
            self._worth[key] = (price, amount, worth)
        return True


def naive_equity_usd(state: EngineState) -> Fraction | None:
    """The oracle: the equity recomputed from every balance and position (tests)."""
    return AccountEquity(state).usd()


def after_settlement(state: EngineState, events: list[ev.Event], now: int) -> BreakerTrip | None:
    """Feed the breakers what one settlement did (`events`, the transition's own): orders
    ended, positions closed, tokens bought or sold; then the equity. Returns a new trip."""
    b = state.breakers
    if not b.rules.any:
        return None
    trip = None
    for e in events:
        if isinstance(e, ev.OrderFilled):
            t = e.trade
            p = state.positions.get(t.position_id)
            decimals = p.decimals if p is not None else state.token_decimals(t.token)
            state.equity.on_fill(t.side, t.token, t.amount, decimals)
            trip = b.on_order_done(False, now) or trip
        elif isinstance(e, ev.OrderFailed):
            trip = b.on_order_done(True, now) or trip
        elif isinstance(e, ev.PositionClosed):
            trip = b.on_position_closed(e.position.exit_reason, now) or trip
    return _equity(state, now) or trip


def on_clock(state: EngineState, now: int) -> BreakerTrip | None:
    """A clock turn: the equity at the prices now, and the feeds' ages. Returns a new trip."""
    b = state.breakers
    trip = _equity(state, now)
    if b.rules.stale_feeds_s is not None:
        trip = b.on_feeds(open_feeds(state), now) or trip
    return trip


def _equity(state: EngineState, now: int) -> BreakerTrip | None:
    if state.breakers.rules.equity_drawdown_pct is None or state.breakers.tripped is not None:
        return None
    equity = state.equity.usd()
    return None if equity is None else state.breakers.on_equity(equity, now)


def open_feeds(state: EngineState) -> list[tuple[str, int]]:
    """(token, last admitted tick ms) of each priced token with positions not closed, sorted:
    O(agents x their tokens), from the books' exposure counts."""
    tokens = {t for b in state.books.values() for t, n in b.exposure.by_token.items() if n > 0}
    out = []
    for token in sorted(tokens):
        tick = state.prices.get(token)
        if tick is not None:
            out.append((token, tick.ts))
    return out


def breaker_values(state: EngineState, now: int) -> dict[str, Any]:
    """The numbers each rule watches now (reads only): equity, the day's peak and the drawdown,
    the stop-out streak, the order window's failures, the oldest feed of an open position."""
    b = state.breakers
    equity = state.equity.usd() if b.rules.equity_drawdown_pct is not None else None
    drawdown = None
    if equity is not None and b.peak is not None and b.peak > 0:
        drawdown = pct_float((max(b.peak, equity) - equity) * 100 / max(b.peak, equity))
    failed, n = sum(b.outcomes), len(b.outcomes)
    token, age = b.oldest_feed(open_feeds(state), now)
    return {
        "equity_usd": usd_text(equity) if equity is not None else None,
        "peak_usd": usd_text(b.peak) if b.peak is not None else None,
        "drawdown_pct": drawdown,
        "stop_out_streak": b.streak,
        "orders_in_window": n,
        "failed_in_window": failed,
        "failure_rate_pct": pct_float(Fraction(failed * 100, n)) if n else None,
        "oldest_feed": {"token": token, "age_s": age / 1000} if token else None,
    }
