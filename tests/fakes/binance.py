"""A fake Binance Spot exchange on 127.0.0.1: the REST API under `/api/v3` and the market-data
WebSocket (`/ws`, `/stream`) in the wire format of Binance's own docs
(github.com/binance/binance-spot-api-docs: rest-api.md, errors.md, filters.md,
web-socket-streams.md, faqs/market_orders_faq.md), well enough for unmodified
`ccxt.async_support.binance` / `ccxt.pro.binance` pointed at it (tests/fakes/binance_ccxt.py).

`FakeBinance` is the controller a test holds: the state (markets with their filters, last
prices, balances, orders, trades), the matching (MARKET orders fill at once at the last price,
plus `slippage_bps`; LIMIT orders rest until a price crosses them) and the fault knobs. The HTTP
side is tests/fakes/binance_rest.py, the WebSocket tests/fakes/binance_ws.py, the wire records
tests/fakes/binance_records.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from aiohttp import web

from tests.fakes.binance_records import (
    EIGHT,
    ORDER_TYPES,
    BinanceError,
    FakeMarket,
    FakeOrder,
    FakeTrade,
    default_markets,
    floor_to,
)
from tests.fakes.binance_rest import BinanceRestApi, SeenBinanceRequest
from tests.fakes.binance_ws import TickerStreams
from tests.fakes.solana_chain import start_app

__all__ = ["BinanceError", "FakeBinance", "FakeMarket", "FakeOrder", "FakeTrade"]

TOO_MANY = (
    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
BANNED = "Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."  # fmt: skip


@dataclass
class _Fault:
    path: str | None
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str


@dataclass
class _AfterAccept:
    """What happens to the answer of an order that was accepted and executed."""

    kind: str  # "hang" | "drop" | "fail"
    delay_s: float = 0.0
    status: int = 503
    body: bytes = b""


class FakeBinance:
    """Start with `url = await fake.start()` (REST under `url + "/api/v3"`, WebSocket at
    `fake.ws_url + "/ws"`), stop with `await fake.close()`. Amounts and prices are Decimals
    (a str/float/int given to a setter is converted with `Decimal(str(x))`)."""

    def __init__(
        self,
        api_key: str = "fake-binance-key",
        secret: str = "fake-binance-secret",
        markets: list[FakeMarket] | None = None,
        *,
        fee_rate: Decimal | str = Decimal("0.001"),
    ) -> None:
        self.api_key, self.secret = api_key, secret
        self.markets: dict[str, FakeMarket] = {m.id: m for m in (markets or default_markets())}
        self.prices: dict[str, Decimal] = {}
        self.balances: dict[str, Decimal] = {}
        self.locked: dict[str, Decimal] = {}
        self.orders: dict[int, FakeOrder] = {}
        self.trades: list[FakeTrade] = []
        self.requests: list[SeenBinanceRequest] = []
        self.fee_rate = Decimal(str(fee_rate))  # taker rate on the received amount
        self.fee_in_bnb = False  # pay fees in BNB (converted at BNB/<quote>) when the BNB suffices
        self.bnb_fee_factor = Decimal("0.75")  # BNB fee = fee value in BNB x this (the discount)
        self.slippage_bps = 0  # market fills at last x (1 +- bps/10000), against the taker
        self.duplicate_scope = "open"  # "open": a client id is refused while an open order has it
        #   (Binance's rule: rest-api.md newClientOrderId); "any": while any order has it
        self.clock_skew_ms = 0  # the server clock = the real clock + this (for -1021)
        self.delays: dict[str, float] = {}  # seconds before answering, per path
        self.rest = BinanceRestApi(self)
        self.ws = TickerStreams(self)
        self.url = ""
        self.ws_url = ""
        self._faults: list[_Fault] = []
        self._after_accept: list[_AfterAccept] = []
        self._partial: list[tuple[Decimal, str]] = []  # (filled fraction, final status)
        self._hidden: dict[str | None, int] = {}  # client id (None: any) -> lookups left
        self._unlisted: dict[str, int] = {}  # client id -> allOrders answers still without it
        self._cancel_races = 0
        self._duplicates = 0
        self._next_order_id = 1000
        self._next_trade_id = 5000
        self._runner: web.AppRunner | None = None
        for market, price in (("BTCUSDT", "65000"), ("ETHUSDT", "3500"), ("BNBUSDT", "600")):
            if market in self.markets:
                self.prices[market] = Decimal(price)
        self.ws.reset_stats()

    # -- state ----------------------------------------------------------------------------------

    def market(self, symbol: str) -> FakeMarket:
        """By ccxt symbol ("BTC/USDT") or market id ("BTCUSDT")."""
        return self.markets[symbol.replace("/", "")]

    def set_price(self, symbol: str, price: Decimal | str | float) -> None:
        """Set the last price, fill resting LIMIT orders it crosses, and push the ticker to the
        WebSocket subscribers of `<id>@ticker`, `<id>@miniTicker` and `!miniTicker@arr`."""
        market = self.market(symbol)
        value = Decimal(str(price))
        self.prices[market.id] = value
        self.ws.record_price(market.id, value)
        for order in [o for o in self.orders.values() if o.symbol == market.id and o.is_open]:
            if order.type != "MARKET" and _crossed(order, value):
                self._execute(order, market, order.orig_qty - order.executed_qty, order.price, True)
        self.ws.push(market.id)

    def add_market(self, market: FakeMarket, price: Decimal | str | float) -> None:
        """List another symbol (exchangeInfo shows it from the next request)."""
        self.markets[market.id] = market
        self.set_price(market.symbol, price)

    def set_balance(self, asset: str, free: Decimal | str | float) -> None:
        self.balances[asset] = Decimal(str(free))

    def balance(self, asset: str) -> Decimal:
        """Free balance of `asset`."""
        return self.balances.get(asset, Decimal(0))

    def set_lot(
        self, symbol: str, *, step: str, min_qty: str | None = None, max_qty: str | None = None
    ) -> None:
        """Change LOT_SIZE (exchangeInfo answers and order checks change with it)."""
        market = self.market(symbol)
        market.step = Decimal(step)
        market.min_qty = Decimal(min_qty) if min_qty is not None else market.step
        if max_qty is not None:
            market.max_qty = Decimal(max_qty)

    def set_min_notional(self, symbol: str, min_notional: str) -> None:
        self.market(symbol).min_notional = Decimal(min_notional)

    def orders_for(self, client_order_id: str) -> list[FakeOrder]:
        """Every order accepted with this client order id, oldest first."""
        return [o for o in self.orders.values() if o.client_order_id == client_order_id]

    def order_posts(self, client_order_id: str | None = None) -> list[SeenBinanceRequest]:
        """Every `POST /api/v3/order` received (accepted or not), optionally for one client id."""
        return [
            r for r in self.requests
            if r.method == "POST" and r.path == "/api/v3/order"
            and (client_order_id is None or r.params.get("newClientOrderId") == client_order_id)
        ]  # fmt: skip

    def requests_to(self, path: str, method: str | None = None) -> int:
        """How many requests reached `path` (e.g. "/api/v3/order"), of `method` if given."""
        return sum(1 for r in self.requests if r.path == path and method in (None, r.method))

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: str | bytes | dict[str, object] = b"",
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        n: int = 1,
    ) -> None:
        """The next `n` requests (to `path`, or any) answer `status` with `body` before any
        other processing (nothing is executed). A dict body is sent as JSON."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        raw = raw.encode() if isinstance(raw, str) else raw
        for _ in range(n):
            self._faults.append(_Fault(path, status, raw, headers or {}, content_type))

    def rate_limit(self, n: int = 1, retry_after_s: int = 1, *, path: str | None = None) -> None:
        """429 with `Retry-After` and `{"code":-1003,...}` (ccxt: DDoSProtection)."""
        body = {"code": -1003, "msg": TOO_MANY}
        self.fail_next(429, body, path=path, headers={"Retry-After": str(retry_after_s)}, n=n)

    def ban(self, n: int = 1, retry_after_s: int = 120, *, path: str | None = None) -> None:
        """418 (IP auto-ban) with `Retry-After` and the -1003 ban message."""
        until = self.now_ms() + retry_after_s * 1000
        body = {"code": -1003, "msg": BANNED.format(until=until)}
        self.fail_next(418, body, path=path, headers={"Retry-After": str(retry_after_s)}, n=n)

    def server_error(self, status: int = 503, n: int = 1, *, path: str | None = None) -> None:
        """A 5xx with an empty body, as a gateway sends it (ccxt: ExchangeNotAvailable, or
        RequestTimeout for 504). rest-api.md: the execution status of a 5xx is UNKNOWN; this
        one executes nothing (see `accept_then_fail` for the other case)."""
        self.fail_next(status, b"", path=path, content_type="text/html", n=n)

    def accept_then_hang(self, delay_s: float = 30.0, n: int = 1) -> None:
        """The next `n` orders are accepted and executed, then the answer waits `delay_s`
        (longer than the client's timeout: ccxt RequestTimeout; the order exists)."""
        self._after_accept.extend(_AfterAccept("hang", delay_s) for _ in range(n))

    def accept_then_drop(self, n: int = 1) -> None:
        """The next `n` orders are accepted and executed, then the connection is cut without
        an answer (ccxt: ExchangeNotAvailable / NetworkError; the order exists)."""
        self._after_accept.extend(_AfterAccept("drop") for _ in range(n))

    def accept_then_fail(
        self, status: int = 503, body: str | dict[str, object] = "", n: int = 1
    ) -> None:
        """The next `n` orders are accepted and executed, then answered `status`/`body`, e.g.
        `accept_then_fail(400, {"code": -1007, "msg": "Timeout waiting for response from
        backend server. Send status unknown; execution status unknown."})`."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
        self._after_accept.extend(_AfterAccept("fail", status=status, body=raw) for _ in range(n))

    def duplicate_next(self, n: int = 1) -> None:
        """The next `n` orders are refused `-2010 "Duplicate order sent."` whatever their id."""
        self._duplicates += n

    def fill_next(self, fraction: str | Decimal, status: str = "EXPIRED", n: int = 1) -> None:
        """The next `n` MARKET orders fill only `fraction` of their quantity (floored to the
        step): status "EXPIRED" (thin book: the rest expires, expiryReason
        INSUFFICIENT_LIQUIDITY, market_orders_faq.md) or "PARTIALLY_FILLED" (the rest stays
        open, cancellable, its cost held)."""
        if status not in ("EXPIRED", "PARTIALLY_FILLED"):
            raise ValueError(f"unknown partial status {status!r}")
        self._partial.extend((Decimal(str(fraction)), status) for _ in range(n))

    def hide_orders(self, n: int = 1, client_order_id: str | None = None) -> None:
        """The next `n` order lookups (`GET /api/v3/order`; of the order with this client id,
        or of any order) answer -2013 "Order does not exist." even when it does (eventual
        consistency: an order that filled while the bot got a 404 for it)."""
        self._hidden[client_order_id] = self._hidden.get(client_order_id, 0) + n

    def unlist_order(self, client_order_id: str, n: int = 1) -> None:
        """The next `n` order lists (`GET /api/v3/allOrders`) leave out the order with this
        client id (with `hide_orders`: an exchange that shows an order nowhere for a while)."""
        self._unlisted[client_order_id] = self._unlisted.get(client_order_id, 0) + n

    def take_unlisted(self, rows: list[FakeOrder]) -> list[FakeOrder]:
        """`rows` without the orders an `unlist_order` hides from this list (one use each)."""
        kept = []
        for order in rows:
            if self._unlisted.get(order.client_order_id):
                self._unlisted[order.client_order_id] -= 1
                continue
            kept.append(order)
        return kept

    def race_cancels(self, n: int = 1) -> None:
        """The next `n` cancels of an open order lose a race with its fill: the remainder fills
        at the last price just before, and the cancel answers -2011 "Unknown order sent."."""
        self._cancel_races += n

    async def drop_ws(self) -> int:
        """Close every WebSocket connection (code 1001); returns how many were open."""
        return await self.ws.drop_all()

    # -- lifecycle ------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_skew_ms

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        self.rest.add_routes(app)
        self.ws.add_routes(app)
        self._runner, self.url = await start_app(app, port)
        self.ws_url = "ws" + self.url[len("http") :]
        return self.url

    async def close(self) -> None:
        await self.ws.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what the REST side asks ----------------------------------------------------------------

    def known_id(self, market_id: str) -> str:
        """`market_id` if it is a market here, else -1121 "Invalid symbol."."""
        if market_id not in self.markets:
            raise BinanceError(-1121, "Invalid symbol.")
        return market_id

    def take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path in (None, path):
                self._faults.remove(fault)
                return fault
        return None

    def take_after_accept(self) -> _AfterAccept | None:
        return self._after_accept.pop(0) if self._after_accept else None

    def take_hidden_lookup(self, order: FakeOrder) -> bool:
        for key in (order.client_order_id, None):
            if self._hidden.get(key):
                self._hidden[key] -= 1
                return True
        return False

    def cancel(self, order: FakeOrder) -> bool:
        """An open order becomes CANCELED (True) and what it held goes back to the free
        balance; or, when a cancel race is queued, it fills first (False)."""
        if self._cancel_races:
            self._cancel_races -= 1
            market = self.markets[order.symbol]
            rest = order.orig_qty - order.executed_qty
            self._execute(order, market, rest, self.prices[market.id], order.type != "MARKET")
            return False
        self._release(order)
        order.status, order.update_time = "CANCELED", self.now_ms()
        return True

    # -- matching -------------------------------------------------------------------------------

    def place(self, params: dict[str, str]) -> FakeOrder:
        """Validate as the matching engine does (errors.md), then create and execute."""
        market = self.markets[self.known_id(_required(params, "symbol"))]
        side, kind = _required(params, "side"), _required(params, "type")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1100, "Illegal characters found in parameter 'side'; legal range is 'BUY, SELL'.")  # fmt: skip
        if kind not in ORDER_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"web_{self._next_order_id}"
        if self._duplicates or self._duplicate(client_id):
            self._duplicates = max(0, self._duplicates - 1)
            raise BinanceError(-2010, "Duplicate order sent.")
        last = self.prices.get(market.id)
        if last is None:
            raise BinanceError(-2010, "Market is closed.")
        price, quote_qty = Decimal(0), Decimal(0)
        if kind == "MARKET":
            fill_price = _slipped(last, side, self.slippage_bps, market.tick)
            qty, quote_qty = self._market_quantity(params, market, fill_price)
        else:
            qty, price = Decimal(_required(params, "quantity")), Decimal(_required(params, "price"))
            fill_price = last
            if kind == "LIMIT_MAKER" and _crossed_at(side, price, last):
                raise BinanceError(-2010, "Order would immediately match and take.")
        _check_lot(market, qty)
        reference = price if kind != "MARKET" else last
        if reference * qty < market.min_notional:
            raise BinanceError(-1013, "Filter failure: NOTIONAL")
        need = qty * (fill_price if kind == "MARKET" else price)
        if (side == "BUY" and self.balance(market.quote) < need) or (
            side == "SELL" and self.balance(market.base) < qty
        ):
            raise BinanceError(-2010, "Account has insufficient balance for requested action.")
        order = FakeOrder(self._next_order_id, client_id, market.id, side, kind, qty, price,
                          quote_qty, self.now_ms())  # fmt: skip
        self._next_order_id += 1
        self.orders[order.order_id] = order
        if kind == "MARKET":
            self._fill_market(order, market, fill_price)
        elif _crossed_at(side, price, last):
            self._execute(order, market, qty, last, False)
        else:
            self._hold(order, market, qty, price)
        return order

    def _market_quantity(
        self, params: dict[str, str], market: FakeMarket, fill_price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """(quantity, origQuoteOrderQty): `quoteOrderQty` buys as much as it can without
        breaking LOT_SIZE (rest-api.md "New order", other info)."""
        if "quantity" in params and "quoteOrderQty" in params:
            raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if "quoteOrderQty" in params:
            quote_qty = Decimal(params["quoteOrderQty"])
            if quote_qty < market.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
            return floor_to(quote_qty / fill_price, market.step), quote_qty
        if "quantity" not in params:
            raise BinanceError(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")  # fmt: skip
        return Decimal(params["quantity"]), Decimal(0)

    def _fill_market(self, order: FakeOrder, market: FakeMarket, fill_price: Decimal) -> None:
        qty, final = order.orig_qty, "FILLED"
        if self._partial:
            fraction, final = self._partial.pop(0)
            qty = floor_to(order.orig_qty * fraction, market.step)
        if qty > 0:
            self._execute(order, market, qty, fill_price, False)
        rest = order.orig_qty - order.executed_qty
        if rest <= 0:
            return
        if final == "EXPIRED":
            order.status, order.expiry_reason = "EXPIRED", "INSUFFICIENT_LIQUIDITY"
        else:
            order.status = "PARTIALLY_FILLED" if order.executed_qty else "NEW"
            self._hold(order, market, rest, fill_price)

    def _execute(
        self, order: FakeOrder, market: FakeMarket, qty: Decimal, price: Decimal, maker: bool
    ) -> None:
        """One trade of `qty` at `price`: balances move, the fee is taken in the received asset
        (or BNB), the order's totals and status follow."""
        self._release(order)
        notional = price * qty
        buy = order.side == "BUY"
        fee_asset, fee = (market.base, qty * self.fee_rate) if buy else (market.quote, notional * self.fee_rate)  # fmt: skip
        bnb = self._bnb_fee(market, notional)
        if bnb is not None:
            fee_asset, fee = "BNB", bnb
        fee = fee.quantize(EIGHT, rounding=ROUND_DOWN)
        pay, pay_amount, get, get_amount = (
            (market.quote, notional, market.base, qty) if buy else (market.base, qty, market.quote, notional)
        )  # fmt: skip
        self.balances[pay] = self.balance(pay) - pay_amount
        self.balances[get] = self.balance(get) + get_amount
        self.balances[fee_asset] = self.balance(fee_asset) - fee
        now = self.now_ms()
        trade = FakeTrade(self._next_trade_id, order.order_id, market.id, price, qty, fee,
                          fee_asset, now, buy, maker)  # fmt: skip
        self._next_trade_id += 1
        self.trades.append(trade)
        order.trades.append(trade)
        order.executed_qty += qty
        order.cumm_quote += notional
        order.update_time = now
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        self.ws.record_trade(market.id, price, qty)
        if order.is_open and order.type != "MARKET":
            self._hold(order, market, order.orig_qty - order.executed_qty, order.price)

    def _bnb_fee(self, market: FakeMarket, notional: Decimal) -> Decimal | None:
        """The fee in BNB when `fee_in_bnb`, BNB/<quote> has a price and the BNB suffices."""
        bnb_price = self.prices.get("BNB" + market.quote)
        if not self.fee_in_bnb or not bnb_price:
            return None
        fee = notional * self.fee_rate * self.bnb_fee_factor / bnb_price
        return fee if self.balance("BNB") >= fee else None

    def _hold(self, order: FakeOrder, market: FakeMarket, qty: Decimal, price: Decimal) -> None:
        asset, amount = (market.quote, qty * price) if order.side == "BUY" else (market.base, qty)
        self.balances[asset] = self.balance(asset) - amount
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + amount
        order.locked = amount

    def _release(self, order: FakeOrder) -> None:
        if not order.locked:
            return
        market = self.markets[order.symbol]
        asset = market.quote if order.side == "BUY" else market.base
        self.locked[asset] -= order.locked
        self.balances[asset] = self.balance(asset) + order.locked
        order.locked = Decimal(0)

    def _duplicate(self, client_id: str) -> bool:
        return any(
            o.client_order_id == client_id and (self.duplicate_scope == "any" or o.is_open)
            for o in self.orders.values()
        )


def _check_lot(market: FakeMarket, qty: Decimal) -> None:
    """filters.md LOT_SIZE: minQty <= quantity <= maxQty and quantity % stepSize == 0."""
    if qty < market.min_qty or qty > market.max_qty or qty % market.step != 0:
        raise BinanceError(-1013, "Filter failure: LOT_SIZE")


def _slipped(last: Decimal, side: str, bps: int, tick: Decimal) -> Decimal:
    if not bps:
        return last
    factor = Decimal(1) + (Decimal(bps) if side == "BUY" else -Decimal(bps)) / 10000
    return floor_to(last * factor, tick)


def _crossed_at(side: str, limit: Decimal, last: Decimal) -> bool:
    return limit >= last if side == "BUY" else limit <= last


def _crossed(order: FakeOrder, last: Decimal) -> bool:
    return _crossed_at(order.side, order.price, last)


def _required(params: dict[str, str], name: str) -> str:
    if not params.get(name):
        raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")  # fmt: skip
    return params[name]
