"""A fake Binance Spot exchange on 127.0.0.1: the REST API under `/api/v3` and the market-data
WebSocket (`/ws`, `/stream`) in the wire format of Binance's own docs
(github.com/binance/binance-spot-api-docs: rest-api.md, errors.md, filters.md,
web-socket-streams.md, faqs/market_orders_faq.md), well enough for unmodified
`ccxt.async_support.binance` / `ccxt.pro.binance` pointed at it (tests/fakes/binance_ccxt.py).

It holds state (markets with their filters, last prices, balances, orders, trades), fills
MARKET orders at once at the last price (plus `slippage_bps`), checks HMAC signatures and the
recvWindow like the real one, records every request, and injects faults on demand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from aiohttp import web

from tests.fakes.binance_ws import TickerStreams
from tests.fakes.solana_chain import start_app

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.Response]]
EIGHT = Decimal("0.00000001")
DAY_MS = 86_400_000
MAX_RECV_WINDOW_MS = 60_000
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET"]  # what this fake executes; ccxt checks the list
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
TOO_MANY = (
    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
BANNED = "Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."  # fmt: skip


def fmt(value: Decimal) -> str:
    """Binance's decimal strings: 8 places ("0.00100000")."""
    return f"{value.quantize(EIGHT, rounding=ROUND_DOWN):f}"


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


class BinanceError(Exception):
    """An error answer: `{"code": code, "msg": msg}` with HTTP `status` (errors.md)."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


@dataclass
class FakeMarket:
    """One spot symbol. Decimals as Binance writes them; `min_notional` is the NOTIONAL filter's
    `minNotional` in the quote asset (applied to MARKET orders at the last price)."""

    base: str
    quote: str
    step: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    tick: Decimal = Decimal("0.01")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    status: str = "TRADING"

    @property
    def id(self) -> str:
        return self.base + self.quote

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"

    def info(self) -> dict[str, object]:
        """The exchangeInfo `symbols[]` entry (rest-api.md "Exchange information")."""
        filters: list[dict[str, object]] = [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(self.tick),
             "maxPrice": "1000000.00000000", "tickSize": fmt(self.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt(self.min_qty), "maxQty": fmt(self.max_qty),
             "stepSize": fmt(self.step)},
            {"filterType": "NOTIONAL", "minNotional": fmt(self.min_notional),
             "applyMinToMarket": True, "maxNotional": fmt(self.max_notional),
             "applyMaxToMarket": False, "avgPriceMins": 0},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ]  # fmt: skip
        return {
            "symbol": self.id, "status": self.status, "baseAsset": self.base,
            "baseAssetPrecision": 8, "quoteAsset": self.quote, "quotePrecision": 8,
            "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8, "orderTypes": ORDER_TYPES, "icebergAllowed": False,
            "ocoAllowed": False, "otoAllowed": False, "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
            "cancelReplaceAllowed": False, "amendAllowed": False,
            "pegInstructionsAllowed": False, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False, "filters": filters, "permissions": [],
            "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_MAKER", "EXPIRE_TAKER", "EXPIRE_BOTH"],
        }  # fmt: skip


def default_markets() -> list[FakeMarket]:
    """BTC/USDT (step 0.00001), ETH/USDT (step 0.0001), BNB/USDT (for BNB fees), min cost 5."""
    return [
        FakeMarket("BTC", "USDT"),
        FakeMarket("ETH", "USDT", step=Decimal("0.0001"), min_qty=Decimal("0.0001")),
        FakeMarket("BNB", "USDT", step=Decimal("0.001"), min_qty=Decimal("0.001")),
    ]


@dataclass
class FakeTrade:
    """One fill; `myTrades` entry and (without symbol/time) a FULL `fills[]` entry."""

    id: int
    order_id: int
    symbol: str  # market id, "BTCUSDT"
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int  # ms
    is_buyer: bool
    is_maker: bool = False

    def my_trade(self) -> dict[str, object]:
        return {
            "symbol": self.symbol, "id": self.id, "orderId": self.order_id, "orderListId": -1,
            "price": fmt(self.price), "qty": fmt(self.qty), "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(self.commission), "commissionAsset": self.commission_asset,
            "time": self.time, "isBuyer": self.is_buyer, "isMaker": self.is_maker,
            "isBestMatch": True,
        }  # fmt: skip

    def fill(self) -> dict[str, object]:
        return {"price": fmt(self.price), "qty": fmt(self.qty),
                "commission": fmt(self.commission), "commissionAsset": self.commission_asset,
                "tradeId": self.id}  # fmt: skip


@dataclass
class FakeOrder:
    order_id: int
    client_order_id: str
    symbol: str  # market id
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER
    orig_qty: Decimal
    price: Decimal  # 0 for MARKET
    orig_quote_qty: Decimal
    time: int
    status: str = "NEW"
    executed_qty: Decimal = Decimal(0)
    cumm_quote: Decimal = Decimal(0)
    update_time: int = 0
    trades: list[FakeTrade] = field(default_factory=list)
    locked: Decimal = Decimal(0)  # balance held for the open remainder (quote for BUY)
    expiry_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def result(self) -> dict[str, object]:
        """The RESULT shape (rest-api.md "New order"), shared by query and cancel answers."""
        body: dict[str, object] = {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": fmt(self.price),
            "origQty": fmt(self.orig_qty), "executedQty": fmt(self.executed_qty),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cumm_quote), "status": self.status,
            "timeInForce": "GTC", "type": self.type, "side": self.side,
            "workingTime": self.time, "selfTradePreventionMode": "EXPIRE_MAKER",
        }  # fmt: skip
        if self.expiry_reason is not None:
            body["expiryReason"] = self.expiry_reason
        return body

    def full(self) -> dict[str, object]:
        """The FULL answer to `POST /api/v3/order`."""
        head = {k: v for k, v in self.result().items() if k not in ("workingTime",)}
        return {**head, "transactTime": self.time, "workingTime": self.time,
                "fills": [t.fill() for t in self.trades]}  # fmt: skip

    def query(self) -> dict[str, object]:
        """The answer to `GET /api/v3/order`."""
        return {**self.result(), "stopPrice": fmt(Decimal(0)), "icebergQty": fmt(Decimal(0)),
                "time": self.time, "updateTime": self.update_time or self.time,
                "isWorking": self.type != "MARKET" or self.is_open}  # fmt: skip


@dataclass
class SeenBinanceRequest:
    method: str
    path: str
    params: dict[str, str]  # query + form body, the signature removed
    api_key: str | None
    at: float  # time.monotonic()
    status: int = 200


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
        self.ws = TickerStreams(self)
        self.url = ""
        self.ws_url = ""
        self._faults: list[_Fault] = []
        self._after_accept: list[_AfterAccept] = []
        self._partial: list[tuple[Decimal, str]] = []  # (filled fraction, final status)
        self._hidden_lookups = 0
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

    def hide_orders(self, n: int = 1) -> None:
        """The next `n` order lookups (`GET /api/v3/order`) answer -2013 "Order does not
        exist." even when it does (eventual consistency)."""
        self._hidden_lookups += n

    async def drop_ws(self) -> int:
        """Close every WebSocket connection (code 1001); returns how many were open."""
        return await self.ws.drop_all()

    # -- lifecycle ------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_skew_ms

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        routes: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/api/v3/ping", self._ping, False),
            ("GET", "/api/v3/time", self._time, False),
            ("GET", "/api/v3/exchangeInfo", self._exchange_info, False),
            ("GET", "/api/v3/ticker/24hr", self._ticker_24hr, False),
            ("GET", "/api/v3/ticker/price", self._ticker_price, False),
            ("GET", "/api/v3/account", self._account, True),
            ("POST", "/api/v3/order", self._new_order, True),
            ("GET", "/api/v3/order", self._query_order, True),
            ("DELETE", "/api/v3/order", self._cancel_order, True),
            ("GET", "/api/v3/openOrders", self._open_orders, True),
            ("GET", "/api/v3/myTrades", self._my_trades, True),
        ]
        for method, path, handler, signed in routes:
            app.router.add_route(method, path, self._endpoint(handler, signed))
        app.router.add_route("*", "/{tail:(api|sapi|fapi|dapi|eapi|papi)/.*}", self._unknown)
        self.ws.add_routes(app)
        self._runner, self.url = await start_app(app, port)
        self.ws_url = "ws" + self.url[len("http") :]
        return self.url

    async def close(self) -> None:
        await self.ws.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the gate -------------------------------------------------------------------------------

    def _endpoint(self, handler: Handler, signed: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # fmt: skip
        async def serve(request: web.Request) -> web.StreamResponse:
            body = (await request.read()).decode()
            params = _params(request.rel_url.raw_query_string, body)
            seen = SeenBinanceRequest(
                request.method, request.path, {k: v for k, v in params.items() if k != "signature"},
                request.headers.get("X-MBX-APIKEY"), time.monotonic(),
            )  # fmt: skip
            self.requests.append(seen)
            response = self._take_fault(request.path)
            if response is None:
                if self.delays.get(request.path):
                    await asyncio.sleep(self.delays[request.path])
                try:
                    if signed:
                        self._authenticate(request, body, params)
                    response = await handler(request, params)
                except BinanceError as e:
                    response = _error(e)
            if isinstance(response, web.Response):
                seen.status = response.status
                response.headers["X-MBX-USED-WEIGHT-1M"] = str(len(self.requests))
            return response

        return serve

    def _take_fault(self, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.path in (None, path):
                self._faults.remove(fault)
                return web.Response(
                    status=fault.status, body=fault.body, content_type=fault.content_type,
                    headers=fault.headers,
                )  # fmt: skip
        return None

    def _authenticate(self, request: web.Request, body: str, params: dict[str, str]) -> None:
        """rest-api.md "Request Security" / "Timing security": the key, then the timestamp
        against recvWindow, then the HMAC-SHA256 of query string + body (signature removed)."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        if key != self.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if "timestamp" not in params:
            raise BinanceError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")  # fmt: skip
        window = Decimal(params.get("recvWindow", "5000"))
        if window > MAX_RECV_WINDOW_MS:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        stamp, now = int(params["timestamp"]), self.now_ms()
        if len(params["timestamp"]) >= 16:  # microseconds
            stamp //= 1000
        if stamp >= now + 1000:
            raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")  # fmt: skip
        if now - stamp > window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")  # fmt: skip
        payload = _unsigned(request.rel_url.raw_query_string) + _unsigned(body)
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params.get("signature", "").lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")

    async def _unknown(self, request: web.Request) -> web.Response:
        self.requests.append(SeenBinanceRequest(request.method, request.path, dict(request.query), request.headers.get("X-MBX-APIKEY"), time.monotonic(), 404))  # fmt: skip
        return web.Response(status=404, text="")

    # -- public endpoints -----------------------------------------------------------------------

    async def _ping(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return web.json_response({"serverTime": self.now_ms()})

    async def _exchange_info(self, request: web.Request, params: dict[str, str]) -> web.Response:
        chosen = self._chosen(params)
        return web.json_response({
            "timezone": "UTC", "serverTime": self.now_ms(), "rateLimits": RATE_LIMITS,
            "exchangeFilters": [], "symbols": [m.info() for m in chosen],
        })  # fmt: skip

    async def _ticker_24hr(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if "symbol" in params:
            return web.json_response(self.ws.rest_ticker(self._market_id(params["symbol"])))
        return web.json_response([self.ws.rest_ticker(m.id) for m in self._chosen(params)])

    async def _ticker_price(self, request: web.Request, params: dict[str, str]) -> web.Response:
        def one(mid: str) -> dict[str, str]:
            return {"symbol": mid, "price": fmt(self.prices[mid])}

        if "symbol" in params:
            return web.json_response(one(self._market_id(params["symbol"])))
        return web.json_response([one(m.id) for m in self._chosen(params)])

    def _market_id(self, market_id: str) -> str:
        if market_id not in self.markets:
            raise BinanceError(-1121, "Invalid symbol.")
        return market_id

    def _chosen(self, params: dict[str, str]) -> list[FakeMarket]:
        if "symbol" in params:
            return [self.markets[self._market_id(params["symbol"])]]
        if "symbols" in params:
            try:
                ids = json.loads(params["symbols"])
            except ValueError:
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.") from None  # fmt: skip
            return [self.markets[self._market_id(i)] for i in ids]
        return list(self.markets.values())

    # -- account endpoints ----------------------------------------------------------------------

    async def _account(self, request: web.Request, params: dict[str, str]) -> web.Response:
        assets = sorted(set(self.balances) | set(self.locked))
        rows = [{"asset": a, "free": fmt(self.balance(a)),
                 "locked": fmt(self.locked.get(a, Decimal(0)))} for a in assets]  # fmt: skip
        if params.get("omitZeroBalances") == "true":
            rows = [r for r in rows if Decimal(str(r["free"])) or Decimal(str(r["locked"]))]
        rate = fmt(self.fee_rate)
        return web.json_response({
            "makerCommission": int(self.fee_rate * 10000), "takerCommission": int(self.fee_rate * 10000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(Decimal(0)), "seller": fmt(Decimal(0))},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.now_ms(),
            "accountType": "SPOT", "balances": rows, "permissions": ["SPOT"], "uid": 354937868,
        })  # fmt: skip

    async def _my_trades(self, request: web.Request, params: dict[str, str]) -> web.Response:
        market_id = self._market_id(_required(params, "symbol"))
        rows = [t for t in self.trades if t.symbol == market_id]
        if "orderId" in params:
            rows = [t for t in rows if t.order_id == int(params["orderId"])]
        if "fromId" in params:
            rows = [t for t in rows if t.id >= int(params["fromId"])]
        if "startTime" in params:
            rows = [t for t in rows if t.time >= int(params["startTime"])]
        if "endTime" in params:
            rows = [t for t in rows if t.time <= int(params["endTime"])]
        limit = min(int(params.get("limit", "500")), 1000)
        rows = rows[:limit] if ("fromId" in params or "startTime" in params) else rows[-limit:]
        return web.json_response([t.my_trade() for t in rows])

    async def _open_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        market_id = self._market_id(params["symbol"]) if "symbol" in params else None
        rows = [o.query() for o in self.orders.values()
                if o.is_open and market_id in (None, o.symbol)]  # fmt: skip
        return web.json_response(rows)

    def _find(self, params: dict[str, str], unknown: BinanceError) -> FakeOrder:
        market_id = self._market_id(_required(params, "symbol"))
        if "orderId" not in params and "origClientOrderId" not in params:
            raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")  # fmt: skip
        if "orderId" in params:
            order = self.orders.get(int(params["orderId"]))
            if order is None or order.symbol != market_id:
                raise unknown
            if params.get("origClientOrderId") not in (None, order.client_order_id):
                raise unknown
            return order
        found = [o for o in self.orders.values()
                 if o.symbol == market_id and o.client_order_id == params["origClientOrderId"]]  # fmt: skip
        if not found:
            raise unknown
        return found[-1]

    async def _query_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        missing = BinanceError(-2013, "Order does not exist.")
        order = self._find(params, missing)
        if self._hidden_lookups:
            self._hidden_lookups -= 1
            raise missing
        return web.json_response(order.query())

    async def _cancel_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        unknown = BinanceError(-2011, "Unknown order sent.")
        order = self._find(params, unknown)
        if not order.is_open:
            raise unknown
        self._release(order)
        order.status, order.update_time = "CANCELED", self.now_ms()
        answer = {**order.result(), "origClientOrderId": order.client_order_id,
                  "clientOrderId": params.get("newClientOrderId", f"cancel{order.order_id}"),
                  "transactTime": order.update_time}  # fmt: skip
        del answer["workingTime"]
        return web.json_response(answer)

    # -- orders ---------------------------------------------------------------------------------

    async def _new_order(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        order = self._place(params)
        after = self._after_accept.pop(0) if self._after_accept else None
        kind = params.get("newOrderRespType", "FULL")
        ack = {"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
               "clientOrderId": order.client_order_id, "transactTime": order.time}  # fmt: skip
        answer = ack if kind == "ACK" else order.full() if kind == "FULL" else {
            **order.result(), "transactTime": order.time}  # fmt: skip
        if after is not None and after.kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # the client sees the connection reset
        if after is not None and after.kind == "hang":
            await asyncio.sleep(after.delay_s)
        if after is not None and after.kind == "fail":
            return web.Response(status=after.status, body=after.body, content_type="application/json")  # fmt: skip
        return web.json_response(answer)

    def _place(self, params: dict[str, str]) -> FakeOrder:
        """Validate as the matching engine does (errors.md), then create and execute."""
        market = self.markets[self._market_id(_required(params, "symbol"))]
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


def _params(query: str, body: str) -> dict[str, str]:
    """Query string and form body merged; the query wins (rest-api.md "General Information on
    Endpoints")."""
    from urllib.parse import parse_qsl

    merged = dict(parse_qsl(body, keep_blank_values=True))
    merged.update(parse_qsl(query, keep_blank_values=True))
    return merged


def _unsigned(raw: str) -> str:
    """`raw` (query string or body) without its `signature=` pair, as it was signed."""
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


def _error(e: BinanceError) -> web.Response:
    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
