"""The CCXT venue against a fake Binance Spot (tests/fakes/binance.py) driven by unmodified
`ccxt.async_support.binance`: market buys by cost and sells by amount under a client order id
recorded before the request, settled into exact Fills; timeouts after acceptance, orders the
exchange hides for a while, duplicate answers, partial fills, rate limits, bans and 5xx, the
market's minimum and a precision change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from ccxt.base import errors as ccxt_errors
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.adapters.venues.ccxt.client import ExchangeClient
from tradingd.adapters.venues.ccxt.errors import ExchangeFailure, exchange_failure
from tradingd.adapters.venues.ccxt.markets import market_rules
from tradingd.adapters.venues.ccxt.venue import CcxtVenue
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import ExchangeSubmission, Order

from tests.fakes.binance import FakeBinance
from tests.fakes.binance_ccxt import async_binance

BTC = "binance:BTC/USDT"
QD, TD = 6, 8  # the agent's USDT decimals; the market's scale (market_rules: 8)


@dataclass
class Settings:
    """The account's venue settings, fast for tests (ms)."""

    order_lookup_attempts: int = 3
    order_not_placed_after_ms: int = 0  # count-based in most tests; the window has its own
    order_lookup_interval_ms: int = 20
    open_order_wait_ms: int = 100
    max_buy_attempts: int = 2
    max_sell_attempts: int = 4
    max_transient_failures: int = 4
    retry_backoff_ms: int = 10
    max_retry_wait_ms: int = 200
    trading: bool = True
    max_order_quote: Decimal | None = None

    def max_order_cost(self) -> Decimal | None:
        return self.max_order_quote


@dataclass
class Journal:
    """The daemon's journal: what was recorded, in order, and what the exchange had seen of
    each request when it was recorded (nothing: it is recorded before it is sent)."""

    fake: FakeBinance
    sent: list[tuple[str, ExchangeSubmission]] = field(default_factory=list)
    posts_at_record: list[int] = field(default_factory=list)
    fail: bool = False

    async def exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> None:
        if self.fail:
            raise ConnectionError("redis down")
        self.posts_at_record.append(len(self.fake.order_posts(sent.client_order_id)))
        self.sent.append((order_id, sent))

    def last(self, order_id: str) -> ExchangeSubmission | None:
        mine = [s for o, s in self.sent if o == order_id]
        return mine[-1] if mine else None


@dataclass
class Rig:
    fake: FakeBinance
    exchange: Any
    client: ExchangeClient
    journal: Journal
    settings: Settings
    rules: dict[str, InstrumentRules]
    prices: dict[str, float]
    alerts: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)

    def venue(self) -> CcxtVenue:
        """A venue object, as a (re)started daemon builds it."""
        return CcxtVenue(
            "main", self.client, journal=self.journal, rules_of=self.rules.get,
            price_of=self.prices.get, clock=lambda: int(time.time() * 1000),
            settings=self.settings, alert=lambda c, m, d: self.alerts.append((c, m, d)),
        )  # fmt: skip

    async def reload_rules(self) -> None:
        """Markets reloaded (as the daemon does every markets_reload_s). Set-up, not a case
        under test: a generous timeout (the tests' short one timed out on a loaded CI machine)."""
        short, self.exchange.timeout = self.exchange.timeout, SETUP_TIMEOUT_MS
        try:
            await self.exchange.load_markets(True)
        finally:
            self.exchange.timeout = short
        market = self.exchange.markets["BTC/USDT"]
        self.rules[BTC] = market_rules(market, self.exchange.precisionMode, TD)

    def orders(self, order_id: str) -> list[Any]:
        """Every order the fake accepted for this intent (all its client ids)."""
        return [o for o in self.fake.orders.values() if o.client_order_id.startswith(f"td-{order_id}-")]  # fmt: skip


SETUP_TIMEOUT_MS = 10_000


@asynccontextmanager
async def ccxt_rig(
    timeout_s: float = 1.0, breaker_failures: int = 50, **overrides: Any
) -> AsyncIterator[Rig]:
    fake = FakeBinance()
    await fake.start()
    fake.set_balance("USDT", "100000")
    fake.set_balance("BTC", "10")
    exchange = async_binance(fake, timeout_ms=int(timeout_s * 1000))
    try:
        breaker = CircuitBreaker(
            "binance:main", failure_threshold=breaker_failures, reset_after_s=5
        )
        client = ExchangeClient(
            "main", exchange, breaker, timeout_s + 0.5, secrets=(fake.api_key, fake.secret)
        )
        rig = Rig(fake, exchange, client, Journal(fake), Settings(**overrides), {}, {})
        await rig.reload_rules()
        rig.prices[BTC] = 65000.0
        yield rig
    finally:
        await exchange.close()
        await fake.close()


def order(
    side: str, amount_in: int, *, oid: str = "ord_1", expires_in_ms: int | None = None,
    exchange: ExchangeSubmission | None = None,
) -> Order:  # fmt: skip
    now = int(time.time() * 1000)
    return Order(
        id=oid, agent_id="a1", position_id="p1", side=side,  # type: ignore[arg-type]
        purpose="entry" if side == "buy" else "exit", token=BTC, amount_in=amount_in,
        reason="signal" if side == "buy" else "stop_loss", created_at=now, venue="ccxt:main",
        quote="USDT", quote_decimals=QD, token_decimals=TD, slippage_bps=50, fee_bps=0,
        expires_at=now + expires_in_ms if expires_in_ms is not None else None,
        max_amount_out=2**64 - 1, exchange=exchange,
    )  # fmt: skip


# -- buys and sells ---------------------------------------------------------------------------


async def test_a_market_buy_by_cost_reaches_the_exchange_with_its_recorded_client_id() -> None:
    async with ccxt_rig() as rig:
        fill = await rig.venue().execute(order("buy", 650_000_000))  # 650 USDT
        (post,) = rig.fake.order_posts()
        sent = rig.journal.last("ord_1")
        assert sent is not None and rig.journal.posts_at_record == [0]  # recorded, then sent
        assert post.params["newClientOrderId"] == sent.client_order_id == "td-ord_1-1"
        assert post.params["quoteOrderQty"] == "650" and post.params["type"] == "MARKET"
        assert sent.cost == 650_000_000 and sent.amount == 0 and sent.attempt == 1
        (placed,) = rig.fake.orders_for("td-ord_1-1")
        # 650 / 65000 = 0.01 BTC; the fee (0.1 %) taken in BTC: 0.00001
        assert fill.amount_out == 1_000_000 - 1_000 and fill.amount_in == 650_000_000
        assert fill.fee == 650_000  # 0.00001 BTC at 65000 = 0.65 USDT
        assert fill.price_usd == 65000.0 and fill.venue_ref == str(placed.order_id)


async def test_a_market_sell_sends_the_floor_and_books_the_whole_amount() -> None:
    async with ccxt_rig() as rig:
        fill = await rig.venue().execute(order("sell", 1_000_123))  # 0.01000123 BTC held
        (post,) = rig.fake.order_posts()
        assert post.params["quantity"] == "0.01" and post.params["side"] == "SELL"
        sent = rig.journal.last("ord_1")
        assert sent is not None and sent.amount == 1_000_000
        assert fill.amount_in == 1_000_123  # the residue below the step stays on the exchange
        assert fill.amount_out == 650_000_000 - 650_000  # 650 USDT less the 0.1 % USDT fee
        assert fill.fee == 650_000


async def test_a_fee_in_bnb_is_valued_at_the_bnb_price_and_not_deducted() -> None:
    async with ccxt_rig() as rig:
        rig.fake.fee_in_bnb = True
        rig.fake.set_balance("BNB", "1")
        rig.prices["binance:BNB/USDT"] = 600.0
        fill = await rig.venue().execute(order("buy", 650_000_000))
        # fee 0.65 USDT x 0.75 / 600 = 0.0008125 BNB
        assert fill.fee_currency == "BNB" and fill.fee_amount == "0.0008125"
        assert fill.fee == 487_500  # 0.0008125 BNB at 600 USDT
        assert fill.amount_out == 1_000_000 and fill.amount_in == 650_000_000


async def test_a_partial_fill_reports_what_filled() -> None:
    async with ccxt_rig() as rig:
        rig.fake.fill_next("0.4")
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.orders("ord_1")) == 1
        assert fill.amount_in == 400_000 and fill.amount_out == 260_000_000 - 260_000


async def test_an_order_left_open_is_cancelled_and_booked_for_what_filled() -> None:
    async with ccxt_rig() as rig:
        rig.fake.fill_next("0.5", status="PARTIALLY_FILLED")
        fill = await rig.venue().execute(order("sell", 1_000_000))
        (placed,) = rig.orders("ord_1")
        assert placed.status == "CANCELED" and fill.amount_in == 500_000
        assert rig.fake.requests_to("/api/v3/order", "DELETE") == 1


# -- never twice ------------------------------------------------------------------------------


async def test_a_timeout_after_acceptance_is_resolved_by_client_id_without_resending() -> None:
    async with ccxt_rig(timeout_s=0.3) as rig:
        rig.fake.accept_then_hang(delay_s=2.0)
        fill = await rig.venue().execute(order("buy", 650_000_000))
        assert len(rig.fake.order_posts()) == 1 and len(rig.orders("ord_1")) == 1
        assert fill.amount_out == 999_000 and fill.venue_ref == str(rig.orders("ord_1")[0].order_id)


async def test_a_dropped_connection_after_acceptance_is_resolved_by_client_id() -> None:
    async with ccxt_rig() as rig:
        rig.fake.accept_then_drop()
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.fake.order_posts()) == 1 and fill.amount_in == 1_000_000


async def test_an_order_hidden_from_lookups_for_a_while_is_still_found() -> None:
    async with ccxt_rig(order_lookup_attempts=4) as rig:
        rig.fake.accept_then_fail(503)
        rig.fake.hide_orders(3)  # three "Order does not exist." answers, then the truth
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.orders("ord_1")) == 1 and fill.amount_in == 1_000_000


async def test_an_order_hidden_past_the_lookups_but_within_the_window_is_not_sent_again() -> None:
    # Eight "does not exist" answers, 20 ms apart: past the 2 lookups, within the 1 s after
    # the request in which the exchange may still show it. Counting lookups alone sends a
    # second order (the case of a real report: a filled stop order answered 404).
    async with ccxt_rig(order_lookup_attempts=2, order_not_placed_after_ms=1_000) as rig:
        rig.fake.accept_then_fail(503)
        rig.fake.hide_orders(8)
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.fake.order_posts()) == 1 and fill.amount_in == 1_000_000
    async with ccxt_rig(order_lookup_attempts=2, order_not_placed_after_ms=0) as rig:
        rig.fake.accept_then_fail(503)
        rig.fake.hide_orders(8)
        rig.fake.unlist_order("td-ord_1-1", n=1)  # and the order list does not show it either
        await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.fake.order_posts()) == 2  # what the window prevents


async def test_an_order_the_lookup_never_shows_is_found_in_the_symbols_order_list() -> None:
    # The attack's F9: the order's answer is lost and its lookup keeps answering "does not
    # exist" past the window: the symbol's order list (allOrders) still shows it. One order.
    async with ccxt_rig(order_lookup_attempts=2, order_not_placed_after_ms=200) as rig:
        rig.fake.accept_then_fail(503)
        rig.fake.hide_orders(10_000)
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.fake.order_posts()) == 1 and fill.amount_in == 1_000_000


async def test_an_earlier_request_that_fills_after_all_is_alerted_as_a_duplicate() -> None:
    # An exchange that shows an order nowhere for a while (its lookup and its order list both
    # lag): the request is counted as not placed and a second one fills; the first then shows
    # up filled: the duplicate is alerted with both, never hidden.
    async with ccxt_rig(order_lookup_attempts=1, order_not_placed_after_ms=0) as rig:
        rig.fake.accept_then_fail(503)
        rig.fake.hide_orders(10_000)
        rig.fake.unlist_order("td-ord_1-1", n=1)
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert fill.amount_in == 1_000_000 and len(rig.fake.order_posts()) == 2
        (dup,) = [d for code, _m, d in rig.alerts if code == "duplicate_exchange_orders"]
        assert dup["client_order_ids"] == ["td-ord_1-1"]


async def test_a_request_proven_absent_lets_one_new_attempt_go() -> None:
    async with ccxt_rig() as rig:
        rig.fake.server_error(503, path="/api/v3/order")  # refused before execution
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert [o.client_order_id for o in rig.orders("ord_1")] == ["td-ord_1-2"]
        sent = rig.journal.last("ord_1")
        assert sent is not None and sent.earlier == ("td-ord_1-1",) and fill.amount_in == 1_000_000


async def test_a_duplicate_client_id_answer_is_looked_up_not_resent() -> None:
    async with ccxt_rig() as rig:
        first = await rig.venue().execute(order("buy", 650_000_000))
        rig.fake.duplicate_scope = "any"
        # a restarted daemon whose journal had the request, but not what it led to
        again = order("buy", 650_000_000, exchange=rig.journal.last("ord_1"))
        rig.fake.duplicate_next()
        fill = await rig.venue().execute(again)
        assert len(rig.orders("ord_1")) == 1 and fill == first.__class__(**{
            **{f: getattr(first, f) for f in first.__struct_fields__}, "ts": fill.ts})  # fmt: skip


async def test_a_recorded_request_is_resolved_before_anything_is_sent() -> None:
    async with ccxt_rig() as rig:
        await rig.venue().execute(order("sell", 1_000_000))
        recorded = rig.journal.last("ord_1")
        venue = rig.venue()  # a restart
        fill = await venue.execute(order("sell", 1_000_000, exchange=recorded))
        assert venue.resolution("ord_1").is_set()
        assert len(rig.fake.order_posts()) == 1 and fill.amount_in == 1_000_000


async def test_a_request_that_cannot_be_recorded_is_never_sent() -> None:
    async with ccxt_rig() as rig:
        rig.journal.fail = True
        venue = rig.venue()
        with pytest.raises(ExchangeFailure) as failed:
            await venue.execute(order("buy", 650_000_000))
        assert failed.value.reason == "not_durable" and failed.value.transient
        assert rig.fake.order_posts() == []
        rig.journal.fail = False  # the runtime tries again: the unrecorded attempt is not reused
        await venue.execute(order("buy", 650_000_000))
        assert [p.params["newClientOrderId"] for p in rig.fake.order_posts()] == ["td-ord_1-2"]


# -- refused requests -------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["rate_limit", "server_error_before"])
async def test_a_refused_request_is_retried_once_refused(fault: str) -> None:
    async with ccxt_rig() as rig:
        if fault == "rate_limit":
            rig.fake.rate_limit(2, retry_after_s=0, path="/api/v3/order")
        else:
            rig.fake.server_error(502, n=1, path="/api/v3/order")
        fill = await rig.venue().execute(order("sell", 1_000_000))
        assert len(rig.orders("ord_1")) == 1 and fill.amount_in == 1_000_000


async def test_a_ban_fails_transient_with_its_retry_after_and_alerts() -> None:
    async with ccxt_rig() as rig:
        rig.fake.ban(retry_after_s=120, path="/api/v3/order")
        with pytest.raises(ExchangeFailure) as failed:
            await rig.venue().execute(order("sell", 1_000_000))
        assert failed.value.reason == "ip_banned" and failed.value.transient
        assert failed.value.retry_after_s == 120
        assert [a[0] for a in rig.alerts] == ["ip_banned"] and rig.orders("ord_1") == []


async def test_an_open_breaker_fails_transient_without_recording() -> None:
    async with ccxt_rig(breaker_failures=1) as rig:
        rig.client.breaker.record_failure()
        with pytest.raises(ExchangeFailure) as failed:
            await rig.venue().execute(order("sell", 1_000_000))
        assert failed.value.reason == "circuit_open" and failed.value.transient
        assert rig.journal.sent == [] and rig.fake.order_posts() == []


async def test_insufficient_funds_fail_final_and_alert() -> None:
    async with ccxt_rig() as rig:
        rig.fake.set_balance("BTC", "0.001")
        with pytest.raises(ExchangeFailure) as failed:
            await rig.venue().execute(order("sell", 1_000_000))
        assert failed.value.reason == "insufficient_funds" and not failed.value.transient
        assert [a[0] for a in rig.alerts] == ["insufficient_funds"]


# -- the market's rules -----------------------------------------------------------------------


async def test_a_sell_below_the_minimum_fails_with_nothing_sent() -> None:
    async with ccxt_rig() as rig:
        with pytest.raises(ExchangeFailure) as failed:
            await rig.venue().execute(order("sell", 999))  # below one 0.00001 BTC step
        assert failed.value.reason == "below_venue_minimum" and not failed.value.transient
        assert rig.journal.sent == [] and rig.fake.order_posts() == []


async def test_a_precision_change_reaches_the_next_sell() -> None:
    async with ccxt_rig() as rig:
        rig.fake.set_lot("BTC/USDT", step="0.001")
        await rig.reload_rules()
        fill = await rig.venue().execute(order("sell", 1_234_567))
        (post,) = rig.fake.order_posts()
        assert post.params["quantity"] == "0.012" and fill.amount_in == 1_234_567
        assert fill.amount_out == 780_000_000 - 780_000  # 0.012 BTC at 65000 less 0.1 %


async def test_a_buy_past_its_expiry_is_not_sent() -> None:
    async with ccxt_rig() as rig:
        with pytest.raises(ExchangeFailure) as failed:
            await rig.venue().execute(order("buy", 650_000_000, expires_in_ms=-1))
        assert failed.value.reason == "expired" and rig.fake.order_posts() == []


async def test_balances_are_the_accounts_totals() -> None:
    async with ccxt_rig() as rig:
        balances = await rig.venue().balances()
        assert balances["USDT"] == Decimal("100000") and balances["BTC"] == Decimal("10")


async def test_a_buy_by_amount_where_cost_is_not_taken_stays_within_the_reservation() -> None:
    async with ccxt_rig() as rig:
        rig.exchange.has = {**rig.exchange.has, "createMarketBuyOrderWithCost": False}
        fill = await rig.venue().execute(order("buy", 650_000_000))
        (post,) = rig.fake.order_posts()
        # 650 USDT at 65000 moved by the order's 50 bps: 0.00995024... BTC, floored to the step
        assert post.params["quantity"] == "0.00995" and "quoteOrderQty" not in post.params
        sent = rig.journal.last("ord_1")
        assert sent is not None and sent.amount == 995_000 and sent.cost == 0
        assert fill.amount_in == 646_750_000 <= 650_000_000 and fill.charge == 0


# -- the account's switches and secrets -------------------------------------------------------


async def test_with_trading_off_a_buy_fails_and_a_sell_waits_with_nothing_sent() -> None:
    async with ccxt_rig(trading=False) as rig:
        with pytest.raises(ExchangeFailure) as buy:
            await rig.venue().execute(order("buy", 650_000_000))
        with pytest.raises(ExchangeFailure) as sell:
            await rig.venue().execute(order("sell", 1_000_000, oid="ord_2"))
        assert buy.value.reason == sell.value.reason == "trading_disabled"
        assert not buy.value.transient and sell.value.transient
        assert rig.journal.sent == [] and rig.fake.order_posts() == []


async def test_a_buy_above_the_accounts_cap_fails_with_nothing_sent() -> None:
    async with ccxt_rig(max_order_quote=Decimal("100")) as rig:
        with pytest.raises(ExchangeFailure) as failed:
            await rig.venue().execute(order("buy", 650_000_000))
        assert failed.value.reason == "above_max_order_quote" and rig.fake.order_posts() == []


async def test_no_key_secret_or_signature_reaches_a_failure_message() -> None:
    async with ccxt_rig() as rig:
        rig.exchange.secret = "wrong-secret-value"
        client = ExchangeClient(
            "main", rig.exchange, CircuitBreaker("x"), 2.0,
            secrets=(rig.fake.api_key, "wrong-secret-value"),
        )  # fmt: skip
        with pytest.raises(ExchangeFailure) as failed:
            await client.balances()
        text = f"{failed.value} {failed.value.details}"
        assert failed.value.reason == "exchange_auth_failed"
        assert rig.fake.api_key not in text and "wrong-secret-value" not in text
        assert "signature=" not in text.replace("signature=***", "")


async def test_an_exchange_without_a_known_lookup_by_client_id_is_refused() -> None:
    import ccxt.async_support as ccxt_async

    kraken = ccxt_async.kraken()
    try:
        with pytest.raises(ValueError, match="client order id"):
            ExchangeClient("k", kraken, CircuitBreaker("k"), 1.0)
    finally:
        await kraken.close()


# -- the exception map ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason", "transient", "maybe_placed"),
    [
        (ccxt_errors.RequestTimeout("binance POST x"), "exchange_timeout", True, True),
        (TimeoutError(), "exchange_timeout", True, True),
        (ccxt_errors.ExchangeNotAvailable("binance 503"), "exchange_unavailable", True, True),
        (ccxt_errors.OnMaintenance("binance"), "exchange_maintenance", True, True),
        (ccxt_errors.NetworkError("reset"), "exchange_network_error", True, True),
        (ccxt_errors.RateLimitExceeded("binance"), "rate_limited", True, False),
        (ccxt_errors.DDoSProtection("binance 429 Too Many"), "rate_limited", True, False),
        (ccxt_errors.DDoSProtection("binance 418 I'm a Teapot"), "ip_banned", True, False),
        (ccxt_errors.InvalidNonce("-1021"), "exchange_clock_skew", True, False),
        (ccxt_errors.InsufficientFunds("x"), "insufficient_funds", False, False),
        (ccxt_errors.InvalidOrder("LOT_SIZE"), "order_rejected", False, False),
        (ccxt_errors.InvalidOrder('{"code":-2010,"msg":"Duplicate order sent."}'),
         "duplicate_client_order_id", False, True),
        (ccxt_errors.DuplicateOrderId("x"), "duplicate_client_order_id", False, True),
        (ccxt_errors.OrderNotFound("x"), "order_not_found", False, False),
        (ccxt_errors.PermissionDenied("x"), "exchange_permission_denied", False, False),
        (ccxt_errors.AuthenticationError("x"), "exchange_auth_failed", False, False),
        (ccxt_errors.ExchangeError("x"), "exchange_error", False, False),
    ],
)  # fmt: skip
def test_each_ccxt_error_maps_to_one_reason(
    exc: BaseException, reason: str, transient: bool, maybe_placed: bool
) -> None:
    failure = exchange_failure(exc, exchange="binance", retry_after_s=7.0)
    assert (failure.reason, failure.transient, failure.maybe_placed) == (
        reason, transient, maybe_placed,
    )  # fmt: skip
    assert failure.details["reason"] == reason
    wait = 7.0 if transient and not isinstance(exc, TimeoutError) else None
    assert failure.retry_after_s == wait


def test_a_message_never_carries_a_secret_or_a_signed_query() -> None:
    exc = ccxt_errors.ExchangeError(
        "binance GET https://api.binance.com/api/v3/account?timestamp=1&signature=abc123 "
        "key=MYKEY123 secret MYSECRET456"
    )
    text = str(exchange_failure(exc, exchange="binance", secrets=("MYKEY123", "MYSECRET456")))
    assert "MYKEY123" not in text and "MYSECRET456" not in text and "abc123" not in text


async def _accepted(rig: Rig, oid: str) -> None:
    for _ in range(200):  # bounded: 2 s
        if rig.orders(oid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fake never accepted the order")


async def test_lookups_refused_by_rate_limits_still_settle_the_one_order() -> None:
    async with ccxt_rig(timeout_s=0.4) as rig:
        rig.fake.accept_then_hang(delay_s=2.0)
        task = asyncio.ensure_future(rig.venue().execute(order("sell", 1_000_000)))
        await _accepted(rig, "ord_1")
        rig.fake.rate_limit(2, retry_after_s=0, path="/api/v3/order")  # the lookups' path
        fill = await task
        assert len(rig.fake.order_posts()) == 1 and fill.amount_in == 1_000_000


async def test_an_order_the_exchange_will_not_look_up_stays_in_flight_and_alerts() -> None:
    async with ccxt_rig(timeout_s=0.4) as rig:
        rig.fake.accept_then_hang(delay_s=2.0)
        venue = rig.venue()
        task = asyncio.ensure_future(venue.execute(order("sell", 1_000_000)))
        await _accepted(rig, "ord_1")
        rig.fake.server_error(503, n=3, path="/api/v3/order")
        with pytest.raises(ExchangeFailure) as failed:
            await task
        assert failed.value.reason == "order_unresolved" and failed.value.transient
        assert [a[0] for a in rig.alerts] == ["order_unresolved"]
        fill = await venue.execute(order("sell", 1_000_000))  # the runtime's next try
        assert len(rig.fake.order_posts()) == 1 and fill.amount_in == 1_000_000
