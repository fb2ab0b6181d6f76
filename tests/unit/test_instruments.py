"""Instrument ids (engine/assets.py), an exchange market's order-size rules (engine/lots.py) and
the rules built from CCXT markets as Binance's loads them (adapters/venues/ccxt/markets.py)."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest
from tradingd.adapters.http.schemas import INSTRUMENT_MAX
from tradingd.adapters.venues.ccxt.markets import (
    DECIMAL_PLACES,
    SIGNIFICANT_DIGITS,
    TICK_SIZE,
    MarketRegistry,
    amount_step,
    market_rules,
)
from tradingd.engine.assets import (
    SOL_MINT,
    is_instrument,
    is_market,
    market_parts,
    require_instrument,
    venue_exchange,
)
from tradingd.engine.errors import ValidationError
from tradingd.engine.lots import InstrumentRules

# Binance spot BTC/USDT as ccxt 4.5 `load_markets()` builds it from /api/v3/exchangeInfo
# (LOT_SIZE stepSize 0.00001000 / minQty 0.00001000, PRICE_FILTER tickSize 0.01, NOTIONAL
# minNotional 5.00000000), precisionMode TICK_SIZE; `info` trimmed.
BINANCE_BTC_USDT: dict[str, Any] = {
    "id": "BTCUSDT",
    "lowercaseId": "btcusdt",
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "settle": None,
    "baseId": "BTC",
    "quoteId": "USDT",
    "settleId": None,
    "type": "spot",
    "spot": True,
    "margin": True,
    "swap": False,
    "future": False,
    "option": False,
    "index": None,
    "active": True,
    "contract": False,
    "linear": None,
    "inverse": None,
    "subType": None,
    "taker": 0.001,
    "maker": 0.001,
    "contractSize": None,
    "expiry": None,
    "expiryDatetime": None,
    "strike": None,
    "optionType": None,
    "precision": {"amount": 1e-05, "price": 0.01, "cost": None, "base": 1e-08, "quote": 1e-08},
    "limits": {
        "leverage": {"min": None, "max": None},
        "amount": {"min": 1e-05, "max": 9000.0},
        "price": {"min": 0.01, "max": 1000000.0},
        "cost": {"min": 5.0, "max": 9000000.0},
        "market": {"min": 0.0, "max": 107.0},
    },
    "marginModes": {"cross": None, "isolated": None},
    "created": None,
    "info": {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
}


def binance_market(symbol: str, **changes: Any) -> dict[str, Any]:
    """BINANCE_BTC_USDT renamed to `symbol`, with top-level `changes`."""
    base, quote = symbol.split("/")
    market = copy.deepcopy(BINANCE_BTC_USDT)
    market.update(
        id=f"{base}{quote}", symbol=symbol, base=base, quote=quote, baseId=base, quoteId=quote
    )
    market.update(changes)
    return market


# -- instrument ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        ("binance:BTC/USDT", ("binance", "BTC", "USDT")),
        ("binance:1000SATS/USDT", ("binance", "1000SATS", "USDT")),
        ("kraken:BTC.B/USDC", ("kraken", "BTC.B", "USDC")),
        ("gate_io:A-B/USDT", ("gate_io", "A-B", "USDT")),
        ("okx2:X_Y/USDT", ("okx2", "X_Y", "USDT")),
    ],
)
def test_market_parts_split_exchange_base_and_quote(token, parts):
    assert market_parts(token) == parts
    assert is_market(token) and is_instrument(token)
    assert require_instrument(token) == token


@pytest.mark.parametrize(
    "token",
    [
        "binance:btc/usdt",  # CCXT unified symbols are upper case
        "binance:BTCUSDT",  # no slash: an exchange's own id, not the unified symbol
        "Binance:BTC/USDT",  # CCXT exchange ids are lower case
        "binance BTC/USDT",
        ":BTC/USDT",
        "binance:/USDT",
        "binance:BTC/",
        "binance:BTC/USDT/X",
        "binance:BTC/USDT:USDT",  # a swap's settle suffix: spot only
        "1binance:BTC/USDT",
        "binance:.BTC/USDT",
        "binance:BTC/USDT\n",
        "binance:BTC\x00/USDT",
        "binance:BTC/USDT ",
        "",
        "x" * 200,
    ],
)
def test_malformed_market_ids_are_not_instruments(token):
    assert market_parts(token) is None
    assert not is_instrument(token)
    with pytest.raises(ValidationError) as caught:
        require_instrument(token, "$.ticks[3].token")
    assert caught.value.path == "$.ticks[3].token"


def test_length_bounds_of_each_part():
    longest = f"{'a' * 32}:{'B' * 20}/{'C' * 20}"
    assert len(longest) == INSTRUMENT_MAX == 74
    assert is_market(longest)
    assert not is_market(f"{'a' * 33}:BTC/USDT")
    assert not is_market(f"binance:{'B' * 21}/USDT")
    assert not is_market(f"binance:BTC/{'C' * 21}")


def test_a_mint_is_an_instrument_but_not_a_market():
    assert is_instrument(SOL_MINT)
    assert not is_market(SOL_MINT)
    assert market_parts(SOL_MINT) is None
    assert not is_instrument(SOL_MINT[:-1] + "0")  # '0' is not base58


def test_a_refused_id_is_echoed_at_most_60_characters_as_a_repr():
    text = "binance:" + "\x1b[31m" + "A" * 300
    with pytest.raises(ValidationError) as caught:
        require_instrument(text)
    message = caught.value.message
    assert "\x1b" not in message and "\\x1b" in message
    assert "A" * 61 not in message
    assert len(message) < 200


def test_venue_exchange_names_the_account_of_a_ccxt_venue():
    assert venue_exchange("ccxt:binance") == "binance"
    assert venue_exchange("ccxt:main-account") == "main-account"
    assert venue_exchange("paper") is None
    assert venue_exchange("jupiter") is None


# -- order-size rules ------------------------------------------------------------------------

BTC_RULES = InstrumentRules(decimals=8, step=1_000, min_amount=1_000, min_cost=5.0)


def test_floor_rounds_down_to_the_step():
    assert BTC_RULES.floor(153_699) == 153_000
    assert BTC_RULES.floor(1_000) == 1_000
    assert BTC_RULES.floor(999) == 0
    assert InstrumentRules(decimals=8).floor(153_699) == 153_699


def test_tradable_is_zero_below_the_least_amount():
    assert BTC_RULES.tradable(2_999) == 2_000
    assert BTC_RULES.tradable(999) == 0
    assert InstrumentRules(decimals=8, step=1_000, min_amount=5_000).tradable(4_999) == 0
    assert InstrumentRules(decimals=8).tradable(0) == 0


def test_notional_below_min_at_the_market_price():
    # 0.00007 BTC at 65,000 USDT = 4.55 USDT < 5; 0.00008 BTC = 5.2 USDT
    assert BTC_RULES.notional_below_min(7_000, Fraction(65_000))
    assert not BTC_RULES.notional_below_min(8_000, Fraction(65_000))
    # exactly the minimum is allowed: 0.0001 BTC at 50,000 = 5 USDT
    assert not BTC_RULES.notional_below_min(10_000, Fraction(50_000))
    assert not InstrumentRules(decimals=8).notional_below_min(1, Fraction(1))


def test_buy_below_min_by_cost_or_by_amount():
    assert BTC_RULES.buy_below_min(Fraction(499, 100), Fraction(65_000))
    # 5 USDT at 65,000 buys 0.00007 BTC after the step = 4.55 USDT: under the notional
    assert BTC_RULES.buy_below_min(Fraction(5), Fraction(65_000))
    # 5.20 USDT buys 0.00008 BTC = 5.20 USDT
    assert not BTC_RULES.buy_below_min(Fraction(52, 10), Fraction(65_000))
    # 1 USDT at 65,000 buys 0.0000153 BTC -> 0.00001 after the step: at the least amount
    no_cost = InstrumentRules(decimals=8, step=1_000, min_amount=1_000)
    assert not no_cost.buy_below_min(Fraction(1), Fraction(65_000))
    assert no_cost.buy_below_min(Fraction(1, 2), Fraction(65_000))


# -- rules from CCXT markets -----------------------------------------------------------------


def test_binance_btc_usdt_rules_in_tick_size_mode():
    rules = market_rules(BINANCE_BTC_USDT, TICK_SIZE)
    assert rules == InstrumentRules(
        decimals=8, step=1_000, min_amount=1_000, min_cost=5.0, cost_step=0.01
    )


def test_decimal_places_mode_reads_a_count_of_places():
    market = binance_market("BTC/USDT")
    market["precision"] = {"amount": 5, "price": 2}
    assert amount_step(market, DECIMAL_PLACES) == amount_step(BINANCE_BTC_USDT, TICK_SIZE)
    places = market_rules(market, DECIMAL_PLACES)
    # price precision 2 places, tick 0.01: quote amounts sent in 0.01 USDT either way
    assert places == market_rules(BINANCE_BTC_USDT, TICK_SIZE) and places.cost_step == 0.01


def test_decimal_places_zero_means_whole_units():
    market = binance_market("BTC/USDT")
    market["precision"] = {"amount": 0, "price": 2}
    assert market_rules(market, DECIMAL_PLACES).step == 10**8


def test_a_step_finer_than_8_decimals_widens_the_scale():
    # SHIB/USDT-like: step 1 unit; a fine-stepped token: step 1e-10
    fine = binance_market("PEPE/USDT")
    fine["precision"]["amount"] = 1e-10
    fine["limits"]["amount"]["min"] = 1e-10
    rules = market_rules(fine, TICK_SIZE)
    assert rules.decimals == 10 and rules.step == 1 and rules.min_amount == 1
    whole = binance_market("SHIB/USDT")
    whole["precision"]["amount"] = 1.0
    whole["limits"]["amount"]["min"] = 1.0
    rules = market_rules(whole, TICK_SIZE)
    assert rules.decimals == 8 and rules.step == 10**8 and rules.min_amount == 10**8


def test_a_precision_change_keeps_the_instruments_decimals():
    coarser = binance_market("BTC/USDT")
    coarser["precision"]["amount"] = 0.0001
    coarser["limits"]["amount"]["min"] = 0.0001
    coarser["limits"]["cost"]["min"] = 10.0
    rules = market_rules(coarser, TICK_SIZE, decimals=8)
    assert rules == InstrumentRules(
        decimals=8, step=10_000, min_amount=10_000, min_cost=10.0, cost_step=0.01
    )
    finer = binance_market("BTC/USDT")
    finer["precision"]["amount"] = 1e-10  # finer than the kept scale: one atomic unit
    finer["limits"]["amount"]["min"] = 1.5e-9  # rounded UP: never below the exchange's
    rules = market_rules(finer, TICK_SIZE, decimals=8)
    assert rules.decimals == 8 and rules.step == 1 and rules.min_amount == 1


def test_markets_without_a_usable_step_have_step_one():
    market = binance_market("BTC/USDT")
    assert market_rules(market, SIGNIFICANT_DIGITS).step == 1  # no fixed step
    market["precision"] = {"amount": None}
    del market["limits"]["cost"]
    rules = market_rules(market, TICK_SIZE)
    assert rules.step == 1 and rules.min_amount == 1_000 and rules.min_cost == 0.0


def test_registry_lists_spot_usd_markets_and_checks_ids():
    registry = MarketRegistry()
    registry.load(
        "binance",
        {
            "BTC/USDT": BINANCE_BTC_USDT,
            "ETH/USDC": binance_market("ETH/USDC"),
            "ETH/BTC": binance_market("ETH/BTC"),  # not a USD quote
            "OLD/USDT": binance_market("OLD/USDT", active=False),
            "BTC/USDT:USDT": binance_market("BTC/USDT", type="swap", spot=False),
        },
    )
    assert registry.exchanges == {"binance"}
    assert registry.market("binance:BTC/USDT") is BINANCE_BTC_USDT
    registry.check("binance:BTC/USDT")
    registry.check("binance:ETH/USDC")
    registry.check(SOL_MINT)  # a mint is not the registry's to check
    for token in ("binance:ETH/BTC", "binance:OLD/USDT", "binance:DOGE/USDT"):
        with pytest.raises(ValidationError) as caught:
            registry.check(token, "$.token")
        assert caught.value.path == "$.token"
        assert "no such spot market" in caught.value.message
    with pytest.raises(ValidationError) as caught:
        registry.check("kraken:BTC/USDT", "$.ticks[0].token")
    assert caught.value.path == "$.ticks[0].token"
    assert "'kraken' is not configured" in caught.value.message


def test_registry_reload_replaces_an_exchanges_markets():
    registry = MarketRegistry()
    registry.load("binance", {"BTC/USDT": BINANCE_BTC_USDT})
    registry.load("binance", {"ETH/USDT": binance_market("ETH/USDT")})
    assert registry.market("binance:BTC/USDT") is None
    assert registry.market("binance:ETH/USDT") is not None
