"""Records of the fake Binance in Binance Spot's wire shapes (binance-spot-api-docs rest-api.md,
filters.md): a market with its exchangeInfo filters, an order (RESULT / FULL / query answers), a
trade (`myTrades` and `fills[]` entries), the `{"code", "msg"}` error, and Binance's 8-place
decimal strings."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

EIGHT = Decimal("0.00000001")
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET"]  # what this fake executes; ccxt checks the list


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
