"""The fake Binance's REST API (`/api/v3`), in the wire format of binance-spot-api-docs
rest-api.md and errors.md: every request is recorded, then a queued fault answers it or it is
authenticated (signed endpoints: API key, timestamp within recvWindow, HMAC-SHA256 signature)
and served from the `FakeBinance` state. Other API families (sapi, fapi, ...) answer 404."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.binance_records import BinanceError, FakeMarket, FakeOrder, fmt

if TYPE_CHECKING:
    from tests.fakes.binance import FakeBinance

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]
MAX_RECV_WINDOW_MS = 60_000
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


@dataclass
class SeenBinanceRequest:
    method: str
    path: str
    params: dict[str, str]  # query + form body, the signature removed
    api_key: str | None
    at: float  # time.monotonic()
    status: int = 200


class BinanceRestApi:
    """Owned by a `FakeBinance` (`fake.rest`); `add_routes` serves it on the fake's app."""

    def __init__(self, fake: FakeBinance) -> None:
        self._fake = fake

    def add_routes(self, app: web.Application) -> None:
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
            ("GET", "/api/v3/allOrders", self._all_orders, True),
            ("GET", "/api/v3/myTrades", self._my_trades, True),
        ]
        for method, path, handler, signed in routes:
            app.router.add_route(method, path, self._endpoint(handler, signed))
        app.router.add_route("*", "/{tail:(api|sapi|fapi|dapi|eapi|papi)/.*}", self._unknown)

    # -- the gate -------------------------------------------------------------------------------

    def _endpoint(self, handler: Handler, signed: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # fmt: skip
        async def serve(request: web.Request) -> web.StreamResponse:
            body = (await request.read()).decode()
            params = _params(request.rel_url.raw_query_string, body)
            seen = SeenBinanceRequest(
                request.method, request.path, {k: v for k, v in params.items() if k != "signature"},
                request.headers.get("X-MBX-APIKEY"), time.monotonic(),
            )  # fmt: skip
            self._fake.requests.append(seen)
            response = self._fault_answer(request.path)
            if response is None:
                if self._fake.delays.get(request.path):
                    await asyncio.sleep(self._fake.delays[request.path])
                try:
                    if signed:
                        self._authenticate(request, body, params)
                    response = await handler(request, params)
                except BinanceError as e:
                    response = _error(e)
            if isinstance(response, web.Response):
                seen.status = response.status
                response.headers["X-MBX-USED-WEIGHT-1M"] = str(len(self._fake.requests))
            return response

        return serve

    def _fault_answer(self, path: str) -> web.Response | None:
        fault = self._fake.take_fault(path)
        if fault is None:
            return None
        return web.Response(
            status=fault.status, body=fault.body, content_type=fault.content_type,
            headers=fault.headers,
        )  # fmt: skip

    def _authenticate(self, request: web.Request, body: str, params: dict[str, str]) -> None:
        """rest-api.md "Request Security" / "Timing security": the key, then the timestamp
        against recvWindow, then the HMAC-SHA256 of query string + body (signature removed)."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        if key != self._fake.api_key:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        if "timestamp" not in params:
            raise BinanceError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")  # fmt: skip
        window = Decimal(params.get("recvWindow", "5000"))
        if window > MAX_RECV_WINDOW_MS:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        stamp, now = int(params["timestamp"]), self._fake.now_ms()
        if len(params["timestamp"]) >= 16:  # microseconds
            stamp //= 1000
        if stamp >= now + 1000:
            raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")  # fmt: skip
        if now - stamp > window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")  # fmt: skip
        payload = _unsigned(request.rel_url.raw_query_string) + _unsigned(body)
        expected = hmac.new(
            self._fake.secret.encode(), payload.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, params.get("signature", "").lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")

    async def _unknown(self, request: web.Request) -> web.Response:
        self._fake.requests.append(SeenBinanceRequest(request.method, request.path, dict(request.query), request.headers.get("X-MBX-APIKEY"), time.monotonic(), 404))  # fmt: skip
        return web.Response(status=404, text="")

    # -- public endpoints -----------------------------------------------------------------------

    async def _ping(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request, params: dict[str, str]) -> web.Response:
        return web.json_response({"serverTime": self._fake.now_ms()})

    async def _exchange_info(self, request: web.Request, params: dict[str, str]) -> web.Response:
        chosen = self._chosen(params)
        return web.json_response({
            "timezone": "UTC", "serverTime": self._fake.now_ms(), "rateLimits": RATE_LIMITS,
            "exchangeFilters": [], "symbols": [m.info() for m in chosen],
        })  # fmt: skip

    async def _ticker_24hr(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if "symbol" in params:
            return web.json_response(
                self._fake.ws.rest_ticker(self._fake.known_id(params["symbol"]))
            )
        return web.json_response([self._fake.ws.rest_ticker(m.id) for m in self._chosen(params)])

    async def _ticker_price(self, request: web.Request, params: dict[str, str]) -> web.Response:
        def one(mid: str) -> dict[str, str]:
            return {"symbol": mid, "price": fmt(self._fake.prices[mid])}

        if "symbol" in params:
            return web.json_response(one(self._fake.known_id(params["symbol"])))
        return web.json_response([one(m.id) for m in self._chosen(params)])

    def _chosen(self, params: dict[str, str]) -> list[FakeMarket]:
        if "symbol" in params:
            return [self._fake.markets[self._fake.known_id(params["symbol"])]]
        if "symbols" in params:
            try:
                ids = json.loads(params["symbols"])
            except ValueError:
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.") from None  # fmt: skip
            return [self._fake.markets[self._fake.known_id(i)] for i in ids]
        return list(self._fake.markets.values())

    # -- account endpoints ----------------------------------------------------------------------

    async def _account(self, request: web.Request, params: dict[str, str]) -> web.Response:
        assets = sorted(set(self._fake.balances) | set(self._fake.locked))
        rows = [{"asset": a, "free": fmt(self._fake.balance(a)),
                 "locked": fmt(self._fake.locked.get(a, Decimal(0)))} for a in assets]  # fmt: skip
        if params.get("omitZeroBalances") == "true":
            rows = [r for r in rows if Decimal(str(r["free"])) or Decimal(str(r["locked"]))]
        rate = fmt(self._fake.fee_rate)
        return web.json_response({
            "makerCommission": int(self._fake.fee_rate * 10000), "takerCommission": int(self._fake.fee_rate * 10000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(Decimal(0)), "seller": fmt(Decimal(0))},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self._fake.now_ms(),
            "accountType": "SPOT", "balances": rows, "permissions": ["SPOT"], "uid": 354937868,
        })  # fmt: skip

    async def _my_trades(self, request: web.Request, params: dict[str, str]) -> web.Response:
        market_id = self._fake.known_id(_required(params, "symbol"))
        rows = [t for t in self._fake.trades if t.symbol == market_id]
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
        market_id = self._fake.known_id(params["symbol"]) if "symbol" in params else None
        rows = [o.query() for o in self._fake.orders.values()
                if o.is_open and market_id in (None, o.symbol)]  # fmt: skip
        return web.json_response(rows)

    async def _all_orders(self, request: web.Request, params: dict[str, str]) -> web.Response:
        market_id = self._fake.known_id(_required(params, "symbol"))
        rows = [o for o in self._fake.orders.values() if o.symbol == market_id]
        rows = self._fake.take_unlisted(rows)
        if "orderId" in params:
            rows = [o for o in rows if o.order_id >= int(params["orderId"])]
        if "startTime" in params:
            rows = [o for o in rows if o.time >= int(params["startTime"])]
        if "endTime" in params:
            rows = [o for o in rows if o.time <= int(params["endTime"])]
        limit = min(int(params.get("limit", "500")), 1000)
        rows = rows[:limit] if ("orderId" in params or "startTime" in params) else rows[-limit:]
        return web.json_response([o.query() for o in rows])

    def _find(self, params: dict[str, str], unknown: BinanceError) -> FakeOrder:
        market_id = self._fake.known_id(_required(params, "symbol"))
        if "orderId" not in params and "origClientOrderId" not in params:
            raise BinanceError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")  # fmt: skip
        if "orderId" in params:
            order = self._fake.orders.get(int(params["orderId"]))
            if order is None or order.symbol != market_id:
                raise unknown
            if params.get("origClientOrderId") not in (None, order.client_order_id):
                raise unknown
            return order
        found = [o for o in self._fake.orders.values()
                 if o.symbol == market_id and o.client_order_id == params["origClientOrderId"]]  # fmt: skip
        if not found:
            raise unknown
        return found[-1]

    async def _query_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        missing = BinanceError(-2013, "Order does not exist.")
        order = self._find(params, missing)
        if self._fake.take_hidden_lookup(order):
            raise missing
        return web.json_response(order.query())

    async def _cancel_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        unknown = BinanceError(-2011, "Unknown order sent.")
        order = self._find(params, unknown)
        if not order.is_open or not self._fake.cancel(order):
            raise unknown
        answer = {**order.result(), "origClientOrderId": order.client_order_id,
                  "clientOrderId": params.get("newClientOrderId", f"cancel{order.order_id}"),
                  "transactTime": order.update_time}  # fmt: skip
        del answer["workingTime"]
        return web.json_response(answer)

    # -- orders ---------------------------------------------------------------------------------

    async def _new_order(self, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        order = self._fake.place(params)
        after = self._fake.take_after_accept()
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


def _required(params: dict[str, str], name: str) -> str:
    if not params.get(name):
        raise BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")  # fmt: skip
    return params[name]


def _params(query: str, body: str) -> dict[str, str]:
    """Query string and form body merged; the query wins (rest-api.md "General Information on
    Endpoints")."""
    merged = dict(parse_qsl(body, keep_blank_values=True))
    merged.update(parse_qsl(query, keep_blank_values=True))
    return merged


def _unsigned(raw: str) -> str:
    """`raw` (query string or body) without its `signature=` pair, as it was signed."""
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


def _error(e: BinanceError) -> web.Response:
    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
