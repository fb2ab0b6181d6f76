"""Edges of resting entries an attack found: a paper limit buy whose market left the limit while
its order was in flight does not fill; a triggered entry's execution is still recorded (status,
position, order, latency) when its signal has left the dedupe window. SOL at 150 USD; one SOL
buys 150 USD of the token."""

from __future__ import annotations

import pytest
from tradingd.adapters.venues.paper import PaperRejected, paper_fill
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.history import HistoryBounds
from tradingd.engine.model import Order

from tests.unit.harness import TOKENS, Clock, Harness

SOL = 10**9
T = TOKENS[0]


def limit_order(limit: float, slippage_bps: int = 100) -> Order:
    return Order(
        id="ord_1", agent_id="a", position_id="p", side="buy", purpose="entry", token=T,
        amount_in=SOL, reason="signal", created_at=0, venue="paper", quote="SOL",
        quote_decimals=9, token_decimals=6, slippage_bps=slippage_bps, fee_bps=0,
        limit_price_usd=limit,
    )  # fmt: skip


def test_paper_limit_buy_does_not_fill_once_the_market_is_above_its_limit():
    # triggered at 0.5, filled 4 s later when the market is at 5.0: no fill at 0.5
    with pytest.raises(PaperRejected) as refused:
        paper_fill(limit_order(0.5), 5.0, 150.0, 0)
    assert str(refused.value) == "limit_not_met"


def test_paper_limit_buy_at_its_limit_pays_the_limit_not_the_slipped_price():
    fill = paper_fill(limit_order(0.5), 0.5, 150.0, 0)
    assert fill.price_usd == 0.5  # 0.5 × 1.01 = 0.505 is capped at the limit
    assert fill.amount_out == 300_000_000  # 150 USD / 0.5 USD, 6 decimals


def test_paper_limit_buy_below_its_limit_pays_the_slipped_price_up_to_the_limit():
    fill = paper_fill(limit_order(0.5), 0.4975, 150.0, 0)
    assert fill.price_usd == 0.5  # 0.4975 × 1.01 = 0.502475, capped at 0.5
    fill = paper_fill(limit_order(0.5), 0.49, 150.0, 0)
    assert fill.price_usd == 0.4949  # 0.49 × 1.01, under the limit
    assert fill.amount_out == 303_091_533  # floor(150 / 0.4949 × 10^6)


def test_an_entry_triggered_after_its_signal_left_the_dedupe_window_is_still_recorded():
    clock = Clock()
    h = Harness(clock)
    h.engine = Engine(clock, history=HistoryBounds(signals_kept=1))
    h.sol(150.0)
    h.agent({"sizing": {"mode": "fixed", "amount": str(SOL)},
             "execution": {"slippage_bps": 0, "fee_bps": 0}})  # fmt: skip
    h.tick(T, 1.0)
    record, _ = h.rest(T, "limit", 0.9)
    signal_id = record.signal.id
    clock.now += 2000
    h.signal(TOKENS[1])  # a newer signal pushes the resting one out of the window
    assert signal_id not in h.engine.signals and h.engine.entries
    clock.now += 1000
    h.tick(T, 0.9)
    h.settle()
    recorded = [
        (e.status, e.position_id is not None, e.order_id is not None, e.latency_ms)
        for e in h.events()
        if isinstance(e, ev.SignalExecutionRecorded) and e.signal_id == signal_id
    ]
    assert recorded == [
        ("resting", False, False, 0.0),
        ("pending", True, True, 3000.0),
        ("filled", True, True, 3000.0),
    ]
