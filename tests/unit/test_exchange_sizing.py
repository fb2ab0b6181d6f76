"""Exchange markets in the engine: which agents may trade them, and how a market's order-size
rules (amount step, least amount, least notional) size buys and sells.

The market throughout: binance:BTC/USDT at 8 decimals, step 0.00001 BTC (1,000 atomic), least
amount 0.00001 BTC, least notional 5 USDT (Binance's LOT_SIZE / NOTIONAL filters as CCXT loads
them). Agents' quote USDT (6 decimals). Fills are built by hand: the venue is not under test."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.engine import events as ev
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.errors import InvariantViolation, ValidationError
from tradingd.engine.lots import InstrumentRules
from tradingd.engine.model import ExchangeSubmission, Fill, Order, Position, Signal, Tick

from tests.unit.harness import TOKENS, Clock

BTC = "binance:BTC/USDT"
BTC_USDC = "binance:BTC/USDC"
KRAKEN_BTC = "kraken:BTC/USDT"
RULES = InstrumentRules(decimals=8, step=1_000, min_amount=1_000, min_cost=5.0)
VENUE = "ccxt:binance"
USDT = 10**6


def config(**parts: Any):
    base: dict[str, Any] = {
        "sizing": {"mode": "fixed", "amount": str(100 * USDT)},
        "execution": {"slippage_bps": 0, "fee_bps": 0},
        "stop_loss": {"enabled": False},
    }
    base.update(parts)
    return config_from_builtins(base)


class Desk:
    """An engine that knows binance's BTC/USDT rules, with one agent and a manual clock."""

    def __init__(self, venue: str = VENUE, quote: str = "USDT", **parts: Any) -> None:
        self.clock = Clock()
        self.engine = Engine(
            self.clock,
            instruments={BTC: RULES, BTC_USDC: RULES},
            venue_exchanges={VENUE: "binance"},
        )
        agent = self.engine.create_agent("a", venue, config(**parts), quote)
        self.agent_id = agent.id
        self.engine.deposit(agent.id, quote, 1_000 * USDT)
        self.events: list[Any] = []
        self.orders: list[Order] = []
        self.drain()

    def drain(self) -> None:
        out = self.engine.drain()
        self.events.extend(out.events)
        self.orders.extend(i.order for i in out.intents)

    def tick(self, token: str, price: float) -> None:
        self.clock.now += 1_000
        self.engine.on_tick(Tick(token, price, self.clock.now))
        self.drain()

    def signal(self, token: str, side: str = "buy") -> str:
        now = self.clock.now
        record, _ = self.engine.on_signal(
            Signal(
                id=f"s{now}{len(self.events)}",
                token=token,
                side=side,  # type: ignore[arg-type]
                received_at=now,
                expires_at=now + 30_000,
            )
        )
        self.drain()
        execution = record.executions[self.agent_id]
        return execution.reason or execution.status

    def fill_buy(self, tokens: int) -> Position:
        """Fill the pending buy for its whole reservation, receiving `tokens` atomic."""
        order = self.orders.pop()
        price = self.engine.price_usd(order.token)
        assert price is not None
        self.engine.on_fill(
            Fill(
                order_id=order.id,
                amount_in=order.amount_in,
                amount_out=tokens,
                price_usd=price,
                fee=0,
                venue_ref="1",
                ts=self.clock.now,
            )
        )
        self.drain()
        return self.engine.positions[order.position_id]

    def alerts(self, code: str) -> list[ev.Alert]:
        return [e for e in self.events if isinstance(e, ev.Alert) and e.code == code]


def bought(tokens: int = 153_000, price: float = 65_000.0, **parts: Any) -> tuple[Desk, Position]:
    """A desk whose agent holds `tokens` atomic BTC bought at `price`."""
    desk = Desk(**parts)
    desk.tick(BTC, price)
    assert desk.signal(BTC) == "pending"
    return desk, desk.fill_buy(tokens)


# -- which agents trade which instruments -----------------------------------------------------


def test_exchange_agent_skips_a_mint_signal_as_venue_cannot_trade():
    desk = Desk()
    desk.tick(TOKENS[0], 1.0)
    assert desk.signal(TOKENS[0]) == "venue_cannot_trade"


def test_exchange_agent_skips_another_exchanges_market():
    desk = Desk()
    desk.tick(KRAKEN_BTC, 65_000.0)
    assert desk.signal(KRAKEN_BTC) == "venue_cannot_trade"


def test_exchange_agent_skips_a_market_quoted_in_another_currency():
    desk = Desk()
    desk.tick(BTC_USDC, 65_000.0)
    assert desk.signal(BTC_USDC) == "quote_mismatch"


def test_an_account_missing_from_venue_exchanges_trades_nothing():
    desk = Desk(venue="ccxt:other")
    desk.tick(BTC, 65_000.0)
    assert desk.signal(BTC) == "venue_cannot_trade"


def test_non_paper_mint_venue_skips_markets():
    desk = Desk(venue="jupiter")
    desk.tick(BTC, 65_000.0)
    assert desk.signal(BTC) == "venue_cannot_trade"


def test_paper_agent_trades_a_market():
    desk = Desk(venue="paper")
    desk.tick(BTC, 65_000.0)
    assert desk.signal(BTC) == "pending"
    assert desk.orders[-1].token_decimals == 8


# -- buys below the market's minimum ----------------------------------------------------------


def test_buy_of_4_usdt_is_below_the_5_usdt_notional():
    desk = Desk(sizing={"mode": "fixed", "amount": str(4 * USDT)})
    desk.tick(BTC, 65_000.0)
    assert desk.signal(BTC) == "below_venue_minimum"
    assert desk.orders == []
    bal = desk.engine.ledger.balance(desk.agent_id, "USDT")
    assert bal.reserved == 0


@pytest.mark.parametrize(
    ("usdt_atomic", "outcome"),
    [
        # The attack's numbers at 64,800: 5 and 5.01 USDT buy 0.00007 BTC after the step, worth
        # 4.536 USDT < 5: the exchange refuses NOTIONAL, so nothing is sent. 5.184 USDT buys
        # 0.00008 BTC = 5.184 USDT: placed.
        (4_990_000, "below_venue_minimum"),
        (5_000_000, "below_venue_minimum"),
        (5_010_000, "below_venue_minimum"),
        (5_183_999, "below_venue_minimum"),
        (5_184_000, "pending"),
    ],
)
def test_a_buy_is_checked_on_the_amount_the_exchange_buys_after_the_step(usdt_atomic, outcome):
    desk = Desk(sizing={"mode": "fixed", "amount": str(usdt_atomic)})
    desk.tick(BTC, 64_800.0)
    assert desk.signal(BTC) == outcome


def test_buy_below_the_least_amount_is_skipped():
    # 6 USDT at 650,000 USDT/BTC buys 0.0000092 BTC: under the 0.00001 BTC least amount.
    desk = Desk(sizing={"mode": "fixed", "amount": str(6 * USDT)})
    desk.tick(BTC, 650_000.0)
    assert desk.signal(BTC) == "below_venue_minimum"


# -- sells: the step, the remainder, the minimum ----------------------------------------------


def test_take_profit_of_33_333_pct_of_0_00153_btc_sells_0_00050_btc():
    # floor(153,000 × 33.333%) = 50,999 atomic, rounded down to the step: 50,000.
    desk, p = bought(
        take_profit={"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 33.333}]}
    )
    desk.tick(BTC, 71_500.0)
    sells = [o for o in desk.orders if o.side == "sell"]
    assert [o.amount_in for o in sells] == [50_000]


def test_a_remainder_under_the_notional_is_sold_with_the_slice():
    # 99% of 153,000 = 151,470 -> 151,000; the 2,000 left (0.00002 BTC = 1.43 USDT at 71,500)
    # is under the 5 USDT notional: the whole 153,000 is sold.
    desk, p = bought(take_profit={"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 99}]})
    desk.tick(BTC, 71_500.0)
    sells = [o for o in desk.orders if o.side == "sell"]
    assert [o.amount_in for o in sells] == [153_000]


def test_a_slice_under_the_minimum_sells_the_least_sellable_amount():
    # The attack's F15: 12 USDT at 65,000 (a BTC fee left 17,982 units); a level sells 40% at
    # 68,250: 7,192 -> 7,000 units = 4.78 USDT, under the 5 USDT notional. The level is honoured
    # with the least sellable slice: 5 / 68,250 = 0.0000733 BTC, up to the step 0.00008 BTC
    # (5.46 USDT), leaving 9,982 units (0.00009 BTC sendable = 6.14 USDT: sellable).
    desk, p = bought(
        tokens=17_982,
        sizing={"mode": "fixed", "amount": str(12 * USDT)},
        take_profit={"enabled": True, "levels": [{"gain_pct": 5, "sell_pct": 40}]},
    )
    desk.tick(BTC, 68_250.0)
    assert [o.amount_in for o in desk.orders if o.side == "sell"] == [8_000]
    assert desk.alerts("exit_below_minimum") == []


def test_a_slice_under_one_step_sells_the_least_sellable_amount():
    # 0.5% of 153,000 = 765 atomic: no whole step. At 71,500 the least sellable is 0.00007 BTC
    # (5 / 71,500 = 0.0000699, up to the step): 7,000 units are sold.
    desk, p = bought(take_profit={"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 0.5}]})
    desk.tick(BTC, 71_500.0)
    assert [o.amount_in for o in desk.orders if o.side == "sell"] == [7_000]


def test_a_slice_whose_least_sellable_amount_leaves_an_unsellable_rest_sells_all():
    # 10,000 units at 71,500 (7.15 USDT): the least sellable 7,000 would leave 3,000 (2.15
    # USDT): the whole position is sold.
    desk, p = bought(
        tokens=10_000,
        take_profit={"enabled": True, "levels": [{"gain_pct": 10, "sell_pct": 20}]},
    )
    desk.tick(BTC, 71_500.0)
    assert [o.amount_in for o in desk.orders if o.side == "sell"] == [10_000]


def test_a_stop_on_a_position_worth_under_the_notional_is_not_placed():
    # 0.00005 BTC at 60,000 = 3 USDT < 5 USDT.
    desk, p = bought(
        tokens=5_000,
        stop_loss={"enabled": True, "mode": "fixed", "default_pct": -5},
    )
    desk.tick(BTC, 60_000.0)
    assert [o for o in desk.orders if o.side == "sell"] == []
    assert desk.alerts("exit_below_minimum")


def test_a_whole_position_off_the_step_is_ordered_whole():
    # 152,847 atomic (a fee taken in BTC left it off the step): a manual close orders all of it;
    # the venue sends the 152,000 multiple and leaves the 847 residue on the exchange.
    desk, p = bought(tokens=152_847)
    oid = desk.engine.close_position(p.id, 100)
    desk.drain()
    assert oid is not None
    assert desk.engine.orders[oid].amount_in == 152_847


def test_dca_below_the_notional_is_skipped_with_an_alert():
    # DCA 2% of 0.00153 BTC at 58,500 = 1.79 USDT: under the 5 USDT notional.
    desk, p = bought(
        dca={"enabled": True, "levels": [{"drop_pct": -10, "buy_pct": 2}], "max_count": 1}
    )
    desk.tick(BTC, 58_500.0)
    assert [o for o in desk.orders if o.purpose == "dca"] == []
    assert len(desk.alerts("below_venue_minimum")) == 1
    assert desk.engine.positions[p.id].dca_count == 1


# -- rules and exchange requests as transitions -----------------------------------------------


def test_rules_change_keeps_the_decimals():
    desk = Desk()
    coarser = InstrumentRules(decimals=8, step=10_000, min_amount=10_000, min_cost=10.0)
    desk.engine.set_instrument_rules(BTC, coarser)
    assert desk.engine.instruments[BTC] == coarser
    with pytest.raises(ValidationError):
        desk.engine.set_instrument_rules(BTC, InstrumentRules(decimals=6))
    with pytest.raises(ValidationError):
        desk.engine.set_instrument_rules(TOKENS[0], RULES)


def test_an_exchange_request_is_recorded_on_its_order_before_sending():
    desk = Desk()
    desk.tick(BTC, 65_000.0)
    desk.signal(BTC)
    order = desk.orders[-1]
    sent = ExchangeSubmission(
        client_order_id=f"{order.id}.1",
        attempt=1,
        account="binance",
        symbol="BTC/USDT",
        sent_at=desk.clock.now,
        cost=order.amount_in,
    )
    desk.engine.on_exchange_order_sent(order.id, sent)
    recorded = [e for e in desk.engine.drain().events if isinstance(e, ev.ExchangeOrderSent)]
    assert recorded[0].order.exchange == sent
    with pytest.raises(InvariantViolation):
        desk.engine.on_exchange_order_sent(order.id, sent)  # not a newer attempt


# -- the kind: any rules, any position, any slice ---------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    step=st.sampled_from([1, 10, 1_000, 5_000, 100_000]),
    min_steps=st.integers(0, 5),
    min_cost=st.sampled_from([0.0, 1.0, 5.0, 10.0, 100.0]),
    held=st.integers(1, 10**9),
    slice_pct=st.integers(1, 100),
    price=st.sampled_from([0.01, 1.5, 650.0, 65_000.0, 123_456.78]),
)
def test_every_sell_is_whole_or_a_tradable_multiple_of_the_step_leaving_a_tradable_rest(
    step: int, min_steps: int, min_cost: float, held: int, slice_pct: int, price: float
):
    rules = InstrumentRules(decimals=8, step=step, min_amount=step * min_steps, min_cost=min_cost)
    desk = Desk()
    desk.engine.set_instrument_rules(BTC, rules)
    desk.tick(BTC, price)
    p = Position(
        id="p", seq=1, agent_id=desk.agent_id, token=BTC, symbol=None, decimals=8,
        config=config(), amount=held,
    )  # fmt: skip
    amount = max(1, held * slice_pct // 100)
    sold = desk.engine.sell_size(p, amount, price)

    def worth(n: int) -> float:  # USDT atomic, about
        return n * price / 10**8 * 10**6

    def tradable(n: int) -> bool:
        sendable = rules.floor(n)
        notional_ok = sendable * price / 10**8 >= min_cost * (1 - 1e-9)
        return sendable >= max(rules.min_amount, 1) and notional_ok and worth(n) >= 1 - 1e-9

    assert sold == 0 or sold == held or (sold % step == 0 and sold < held)
    if sold:
        assert tradable(sold)
    if 0 < sold < held:
        assert tradable(held - sold)
    if sold == 0:  # a slice under the minimum is raised to the least sellable: only a slice
        # worth no quote atomic unit (the dust rule of every token), or nothing sellable, is 0
        assert not tradable(held) or worth(rules.floor(amount)) < 1


def test_a_signal_naming_a_markets_decimals_is_refused():
    desk = Desk()
    desk.tick(BTC, 65_000.0)
    now = desk.clock.now
    with pytest.raises(ValidationError) as err:
        desk.engine.on_signal(
            Signal(id="s", token=BTC, received_at=now, expires_at=now + 1_000, decimals=2)
        )
    assert err.value.path == "$.decimals"


def test_a_tick_naming_a_markets_decimals_does_not_change_its_scale():
    desk = Desk(venue="paper")
    desk.clock.now += 1_000
    desk.engine.on_tick(Tick("binance:ETH/USDT", 3_000.0, desk.clock.now, decimals=2))
    assert "binance:ETH/USDT" not in desk.engine.decimals
    desk.engine.on_tick(Tick(BTC, 65_000.0, desk.clock.now, decimals=2))
    assert desk.engine.prices[BTC].price_usd == 65_000.0
    assert desk.engine.decimals[BTC] == 8


# -- the market's own exchange prices it ------------------------------------------------------


def test_a_pushed_price_cannot_move_a_market_its_exchange_prices():
    # The attack: the exchange's ticker says 65,000; a push client says 30,000 (under the stop
    # at -5%): it is kept as a secondary source, the price stays 65,000 and nothing is sold.
    desk, p = bought(stop_loss={"enabled": True, "mode": "fixed", "default_pct": -5})
    desk.clock.now += 1_000
    desk.engine.on_tick(Tick(BTC, 65_000.0, desk.clock.now, source="binance"))
    desk.engine.on_tick(Tick(BTC, 30_000.0, desk.clock.now, source="friend"))
    desk.drain()
    assert desk.engine.prices[BTC].price_usd == 65_000.0
    assert [o for o in desk.orders if o.side == "sell"] == []
    assert desk.engine.positions[p.id].status == "open"


def test_a_pushed_price_applies_once_the_exchanges_tick_is_stale():
    desk, _ = bought()
    desk.clock.now += 1_000
    desk.engine.on_tick(Tick(BTC, 65_000.0, desk.clock.now, source="binance"))
    desk.clock.now += desk.engine.max_price_age_ms + 1
    desk.engine.on_tick(Tick(BTC, 64_000.0, desk.clock.now, source="friend"))
    assert desk.engine.prices[BTC].price_usd == 64_000.0


# -- failed exits back off; repeated alerts are bounded ----------------------------------------


def test_a_stop_whose_sell_the_venue_refuses_is_not_resent_on_every_tick():
    # The attack's F3: the exchange refuses the stop's sell (insufficient_funds): the next
    # ticks place nothing for 1 s, then one sell; refused again, 2 s; a fill resets the wait.
    desk, p = bought(stop_loss={"enabled": True, "mode": "fixed", "default_pct": -5})

    def sells() -> list[Order]:
        return [o for o in desk.orders if o.side == "sell"]

    desk.tick(BTC, 60_000.0)  # through the stop at 61,750
    (first,) = sells()
    desk.engine.on_order_failed(first.id, "insufficient_funds")
    desk.drain()
    failed_at = desk.clock.now
    for _ in range(3):  # ticks within the first second: nothing sent
        desk.clock.now += 200
        desk.engine.on_tick(Tick(BTC, 60_000.0, desk.clock.now))
        desk.drain()
    assert len(sells()) == 1
    desk.clock.now = failed_at + 1_000
    desk.engine.on_tick(Tick(BTC, 60_000.0, desk.clock.now))
    desk.drain()
    assert len(sells()) == 2
    desk.engine.on_order_failed(sells()[-1].id, "insufficient_funds")
    desk.drain()
    assert desk.engine.positions[p.id].exit_retry_at == desk.clock.now + 2_000


def test_an_unsellable_stop_is_alerted_once_a_minute_not_every_tick():
    # The attack's F14: 0.00005 BTC under its stop, worth 3 USDT < 5: one alert, not one a tick.
    desk, _ = bought(tokens=5_000, stop_loss={"enabled": True, "mode": "fixed", "default_pct": -5})
    for _ in range(30):
        desk.tick(BTC, 60_000.0)  # a tick a second
    assert len(desk.alerts("exit_below_minimum")) == 1
    desk.clock.now += 60_000
    desk.tick(BTC, 60_000.0)
    assert len(desk.alerts("exit_below_minimum")) == 2


@pytest.mark.parametrize(
    ("usdt_atomic", "outcome"),
    [
        # The verifier's N1: CCXT sends quoteOrderQty cut to 0.01 USDT: 5.184 goes as 5.18,
        # which buys 0.00007 BTC at 64,800 (refused NOTIONAL); 5.19 buys 0.00008 BTC.
        (5_184_000, "below_venue_minimum"),
        (5_189_999, "below_venue_minimum"),
        (5_190_000, "pending"),
    ],
)
def test_a_buy_is_checked_on_the_quote_amount_as_sent(usdt_atomic, outcome):
    desk = Desk(sizing={"mode": "fixed", "amount": str(usdt_atomic)})
    desk.engine.set_instrument_rules(
        BTC, InstrumentRules(decimals=8, step=1_000, min_amount=1_000, min_cost=5.0, cost_step=0.01)
    )
    desk.tick(BTC, 64_800.0)
    assert desk.signal(BTC) == outcome
