"""The calls the CCXT venue makes to one exchange account, each bounded by a timeout, through the
account's circuit breaker, with CCXT's errors mapped once (errors.py) and its answers parsed
once (fills.py). CCXT's own rate limiter stays on (`enableRateLimit`).

Client order ids: the exchange's own parameter for a new order and for the lookup by it (CCXT
Manual, "Placing orders" / "Custom order params"; Binance spot REST "New order" `newClientOrderId`
and "Query order" `origClientOrderId`, ids matching `^[\\.A-Z\\:/a-z0-9_-]{1,36}$`). An exchange
is only traded when its lookup by client id is known (CLIENT_ID_PARAMS or given): an order that
cannot be looked up after a timeout could be placed twice."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from ccxt.async_support.base.exchange import Exchange
from msgspec import Struct
from tradingd.adapters.feeds.retry import retry_after_s
from tradingd.adapters.venues.breaker import CircuitBreaker, CircuitOpen
from tradingd.adapters.venues.ccxt.errors import ExchangeFailure, map_exceptions
from tradingd.adapters.venues.ccxt.fills import ExchangeOrder, decimal_of, parse_order, with_trades

T = TypeVar("T")


class ClientIdParams(Struct, frozen=True, kw_only=True):
    """How an exchange takes a client order id: the parameter naming it on a new order
    (`create`) and on a lookup (`lookup`), and the ids it accepts (`pattern`, full match)."""

    create: str
    lookup: str
    pattern: str = r"[.A-Za-z0-9:/_-]{1,32}"

    def accepts(self, client_order_id: str) -> bool:
        """Whether the exchange takes `client_order_id` as it is."""
        return re.fullmatch(self.pattern, client_order_id) is not None

    def client_order_id(self, order_id: str, attempt: int) -> str:
        """The client order id of an order's `attempt` (1-based): "td-<order id>-<attempt>",
        or with a digest of the order id when the exchange would not take that. Deterministic.
        Raises ValueError when the exchange takes neither."""
        cid = f"td-{order_id}-{attempt}"
        if self.accepts(cid):
            return cid
        cid = f"td-{hashlib.sha256(order_id.encode()).hexdigest()[:20]}-{attempt}"
        if not self.accepts(cid):
            raise ValueError(f"the exchange takes no client order id like {cid!r}")
        return cid


# Exchanges whose lookup by client order id is read from CCXT's code (binance.py create_order /
# fetch_order) and exercised by the tests; binanceus and binancecoinm share binance's code.
_BINANCE = ClientIdParams(
    create="newClientOrderId", lookup="origClientOrderId", pattern=r"[.A-Z:/a-z0-9_-]{1,36}"
)
CLIENT_ID_PARAMS: Mapping[str, ClientIdParams] = {"binance": _BINANCE, "binanceus": _BINANCE}


def _number(d: Decimal) -> float | str:
    """An amount for CCXT: the float when it reads back as exactly `d` (CCXT formats numbers by
    their repr), else the decimal string (CCXT reads strings as written)."""
    f = float(d)
    return f if Decimal(repr(f)) == d else format(d, "f")


class ExchangeClient:
    """One exchange account. Every method raises ExchangeFailure (errors.py): `circuit_open`
    when the breaker refuses (nothing was sent), the mapped CCXT error otherwise, and
    `exchange_timeout` (maybe placed) when no answer came within `timeout_s` seconds.

    `secrets`: the account's API key, secret and password, removed from every message."""

    def __init__(
        self,
        account: str,
        exchange: Exchange,
        breaker: CircuitBreaker,
        timeout_s: float,
        *,
        secrets: tuple[str, ...] = (),
        client_ids: ClientIdParams | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        ids = client_ids or CLIENT_ID_PARAMS.get(exchange.id)
        if ids is None:
            raise ValueError(
                f"exchange {exchange.id!r}: no known way to look an order up by its client "
                "order id; refusing to trade it (an order could be placed twice)"
            )
        exchange.enableRateLimit = True
        self.account = account
        self.exchange = exchange
        self.breaker = breaker
        self.timeout_s = timeout_s
        self.client_ids = ids
        self._secrets = tuple(s for s in secrets if s)
        self._clock_ms = clock_ms

    @property
    def exchange_id(self) -> str:
        """CCXT's id of the exchange ("binance")."""
        return str(self.exchange.id)

    @property
    def buys_by_cost(self) -> bool:
        """True when a market buy can name the quote amount to spend."""
        return bool((self.exchange.has or {}).get("createMarketBuyOrderWithCost"))

    # -- orders ------------------------------------------------------------------------------

    async def buy_by_cost(self, symbol: str, cost: Decimal, client_order_id: str) -> ExchangeOrder:
        """A market buy spending `cost` (quote, whole units) under `client_order_id`."""
        params = {self.client_ids.create: client_order_id}
        raw = await self._call(
            lambda: self.exchange.create_market_buy_order_with_cost(symbol, _number(cost), params)
        )
        return self._parsed(raw)

    async def market_order(
        self, symbol: str, side: str, amount: Decimal, client_order_id: str
    ) -> ExchangeOrder:
        """A market `side` ("buy"/"sell") order for `amount` (base, whole units)."""
        params = {self.client_ids.create: client_order_id}
        raw = await self._call(
            lambda: self.exchange.create_order(
                symbol, "market", side, _number(amount), None, params
            )
        )
        return self._parsed(raw)

    async def order_by_client_id(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order placed under `client_order_id` on `symbol`, or None when the exchange says
        there is none (it may yet appear: exchanges are eventually consistent). Raises
        ExchangeFailure `order_lookup_mismatch` (alert) when the exchange answers with another
        order."""
        params = {self.client_ids.lookup: client_order_id}
        try:
            raw = await self._call(lambda: self.exchange.fetch_order(None, symbol, params))
        except ExchangeFailure as exc:
            if exc.reason == "order_not_found":
                return None
            raise
        found = self._parsed(raw)
        if (found.client_order_id not in (None, client_order_id)) or (
            found.symbol and found.symbol != symbol
        ):
            raise ExchangeFailure(
                "order_lookup_mismatch",
                f"{self.exchange_id}: looking up {client_order_id} on {symbol} answered order "
                f"{found.id} ({found.client_order_id} on {found.symbol})",
                transient=False,
                alert=True,
            )
        return found

    async def recent_orders(self, symbol: str, since_ms: int) -> list[ExchangeOrder]:
        """The symbol's orders since `since_ms` (epoch ms; CCXT `fetch_orders`, Binance
        `GET /api/v3/allOrders`): a second view of the exchange, which may show a request the
        single-order lookup does not yet. [] when the exchange lists no orders."""
        ex = self.exchange
        if not (ex.has or {}).get("fetchOrders"):
            return []
        raw = await self._call(lambda: ex.fetch_orders(symbol, since_ms))
        return [self._parsed(doc) for doc in raw or []]

    async def with_fees(self, symbol: str, placed: ExchangeOrder) -> ExchangeOrder:
        """`placed` with the fees its trades paid (when the order itself did not say)."""
        if not placed.needs_trades:
            return placed
        ex = self.exchange
        if (ex.has or {}).get("fetchOrderTrades"):
            trades = await self._call(lambda: ex.fetch_order_trades(placed.id, symbol))
        else:
            since = placed.ts - 1 if placed.ts is not None else None
            trades = await self._call(lambda: ex.fetch_my_trades(symbol, since))
        return with_trades(placed, trades or [])

    async def cancel(self, symbol: str, order_id: str) -> None:
        """Cancel the exchange's order `order_id`; an order already final (not found) is no
        error."""
        try:
            await self._call(lambda: self.exchange.cancel_order(order_id, symbol))
        except ExchangeFailure as exc:
            if exc.reason != "order_not_found":
                raise

    # -- market data and account -------------------------------------------------------------

    async def last_price(self, symbol: str) -> Decimal | None:
        """The market's last price (quote per whole base), or None when it has none."""
        ticker = await self._call(lambda: self.exchange.fetch_ticker(symbol))
        price = decimal_of((ticker or {}).get("last"))
        return price if price is not None and price > 0 else None

    async def balances(self) -> dict[str, Decimal]:
        """Total balance per currency code (whole units), zero balances left out."""
        raw = await self._call(lambda: self.exchange.fetch_balance())
        totals = (raw or {}).get("total") or {}
        out: dict[str, Decimal] = {}
        for code, value in totals.items():
            amount = decimal_of(value)
            if amount:
                out[str(code)] = amount
        return out

    async def load_markets(self, reload: bool = False) -> Mapping[str, Mapping[str, Any]]:
        """The exchange's markets (CCXT `load_markets`): symbol -> market structure."""
        markets: Mapping[str, Mapping[str, Any]] = await self._call(
            lambda: self.exchange.load_markets(reload)
        )
        return markets

    async def close(self) -> None:
        """Release the exchange's HTTP session."""
        await self.exchange.close()

    # -- the one way out ---------------------------------------------------------------------

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        try:
            self.breaker.check()
        except CircuitOpen as exc:
            raise ExchangeFailure(
                "circuit_open", str(exc), transient=True, retry_after_s=exc.retry_after_s
            ) from None
        try:
            # asyncio.timeout, not wait_for: no task in between, so the failed answer's
            # headers (Retry-After) are still the exchange's last ones when the error is mapped
            with map_exceptions(self.exchange_id, self._secrets, self._retry_after):
                async with asyncio.timeout(self.timeout_s):
                    result = await request()
        except ExchangeFailure as exc:
            if exc.transient:
                self.breaker.record_failure()
            else:
                self.breaker.record_success()  # the host answered: it works
            raise
        self.breaker.record_success()
        return result

    def _retry_after(self) -> float | None:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        return retry_after_s(value, self._clock_ms())

    def _parsed(self, raw: Any) -> ExchangeOrder:
        try:
            return parse_order(raw or {})
        except ValueError as exc:
            raise ExchangeFailure(
                "exchange_bad_response", f"{self.exchange_id}: {exc}", transient=True,
                maybe_placed=True,
            ) from None  # fmt: skip
