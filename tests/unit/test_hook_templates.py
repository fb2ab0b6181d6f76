"""Hook body templates (adapters/hooks/templates.py), the HMAC check and the hook id's
redaction: pure functions, no daemon."""

from __future__ import annotations

import json
import logging

import pytest
from tradingd.adapters.app.settings import TokenSettings
from tradingd.adapters.hooks.secret import (
    HookPathFilter,
    hook_hash,
    new_hook_id,
    redact_hook_path,
)
from tradingd.adapters.hooks.signature import BadSignature, sign, verify
from tradingd.adapters.hooks.templates import (
    HookDefaults,
    resolve_symbol,
    symbol_index,
    to_signal_in,
)
from tradingd.adapters.http.errors import MalformedJson
from tradingd.engine.errors import ValidationError

BONK = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
SYMBOLS = symbol_index({BONK: TokenSettings(symbol="Bonk"), JUP: TokenSettings(symbol="JUP")})
NONE = HookDefaults()


def tv(body: dict, defaults: HookDefaults = NONE):
    return to_signal_in("tradingview", json.dumps(body).encode(), defaults, SYMBOLS)


def text(line: str, defaults: HookDefaults = NONE):
    return to_signal_in("text", line.encode(), defaults, SYMBOLS)


def path_of(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value.details["path"])


# -- tradingview ------------------------------------------------------------------------------


def test_tradingview_reads_action_token_id_and_ignores_chart_fields():
    signal = tv(
        {
            "action": "buy",
            "token": BONK,
            "id": "BONK-1700000000",
            "close": 0.0000213,
            "interval": "15",
            "exchange": "BINANCE",
        }
    )
    assert (signal.side, signal.token, signal.id, signal.strength) == (
        "buy",
        BONK,
        "BONK-1700000000",
        1,
    )


@pytest.mark.parametrize(
    "word,side",
    [
        ("buy", "buy"),
        ("BUY", "buy"),
        ("long", "buy"),
        ("sell", "sell"),
        ("Short", "sell"),
        ("flat", "sell"),
        ("close", "sell"),
        ("exit", "sell"),
    ],
)
def test_tradingview_action_words_map_to_a_side(word, side):
    assert tv({"action": word, "token": BONK}).side == side


def test_tradingview_side_is_an_alias_of_action():
    assert tv({"side": "sell", "token": BONK}).side == "sell"


def test_tradingview_unknown_action_is_a_422_at_action():
    with pytest.raises(ValidationError) as exc:
        tv({"action": "hold", "token": BONK})
    assert path_of(exc) == "$.action"


def test_tradingview_missing_action_is_a_422_at_action():
    with pytest.raises(ValidationError) as exc:
        tv({"token": BONK})
    assert path_of(exc) == "$.action"


@pytest.mark.parametrize("ticker", ["BONK", "bonk", "BONKUSDT", "BONK/USDC", "BONKUSD", "BONKSOL"])
def test_tradingview_ticker_finds_the_mint_in_the_tokens_table(ticker):
    signal = tv({"action": "buy", "ticker": ticker})
    assert signal.token == BONK and signal.symbol == ticker


def test_tradingview_unknown_ticker_is_a_422_at_ticker():
    with pytest.raises(ValidationError) as exc:
        tv({"action": "buy", "ticker": "WIFUSDT"})
    assert path_of(exc) == "$.ticker"


def test_a_ticker_beside_a_token_may_not_name_another_token_of_the_table():
    with pytest.raises(ValidationError, match="names another token") as exc:
        tv({"action": "buy", "token": BONK, "ticker": "JUPUSDT"})
    assert path_of(exc) == "$.ticker"
    assert tv({"action": "buy", "token": BONK, "ticker": "BONKUSDT"}).token == BONK
    # a ticker the table does not know stays a label, as POST /v1/signals takes one
    assert tv({"action": "buy", "token": BONK, "ticker": "MEME"}).symbol == "MEME"


def test_a_symbol_two_tokens_share_names_neither():
    symbols = symbol_index({BONK: TokenSettings(symbol="X"), JUP: TokenSettings(symbol="x")})
    with pytest.raises(ValidationError, match="several tokens"):
        resolve_symbol("X", symbols, "$.ticker")


def test_tradingview_numbers_sent_as_text_are_read_as_numbers():
    signal = tv({"action": "buy", "token": BONK, "strength": " 4 ", "expires_in_ms": "5000"})
    assert signal.strength == 4 and signal.expires_in_ms == 5000


@pytest.mark.parametrize("value", [4, 4.0, "4.0", "4.", " 4 "])
def test_tradingview_whole_numbers_in_any_spelling_are_a_strength(value):
    assert tv({"action": "buy", "token": BONK, "strength": value}).strength == 4


@pytest.mark.parametrize("value", [4.5, "4.5", "four", True])
def test_tradingview_strength_that_is_not_whole_is_a_422(value):
    with pytest.raises(ValidationError) as exc:
        tv({"action": "buy", "token": BONK, "strength": value})
    assert path_of(exc) == "$.strength"


def test_tradingview_comment_becomes_the_reason():
    assert tv({"action": "buy", "token": BONK, "comment": "RSI < 30"}).reason == "RSI < 30"


def test_an_unreplaced_placeholder_is_a_422_naming_its_field():
    with pytest.raises(ValidationError, match="placeholder") as exc:
        tv({"action": "buy", "token": BONK, "id": "{{strategy.order.idd}}"})
    assert path_of(exc) == "$.id"


def test_tradingview_strength_out_of_bounds_is_a_422_at_strength():
    with pytest.raises(ValidationError) as exc:
        tv({"action": "buy", "token": BONK, "strength": 9})
    assert path_of(exc) == "$.strength"


def test_tradingview_body_must_be_json():
    with pytest.raises(MalformedJson):
        to_signal_in("tradingview", b"buy BONK", NONE, SYMBOLS)


def test_a_duplicate_key_in_a_tradingview_body_is_a_422():
    raw = b'{"action": "buy", "action": "sell", "token": "%s"}' % BONK.encode()
    with pytest.raises(ValidationError) as exc:
        to_signal_in("tradingview", raw, NONE, SYMBOLS)
    assert path_of(exc) == "$.action"


# -- defaults and the fixed source ------------------------------------------------------------


def test_the_hooks_source_replaces_the_bodys():
    signal = tv({"action": "buy", "token": BONK, "source": "spoof"}, HookDefaults(source="tv"))
    assert signal.source == "tv"


def test_the_hooks_type_and_strength_fill_only_what_the_body_left_out():
    defaults = HookDefaults(type="breakout", strength=3)
    assert (
        tv({"action": "buy", "token": BONK}, defaults).type,
        tv({"action": "buy", "token": BONK}, defaults).strength,
    ) == ("breakout", 3)
    given = tv({"action": "buy", "token": BONK, "type": "dip", "strength": 5}, defaults)
    assert (given.type, given.strength) == ("dip", 5)


# -- json -------------------------------------------------------------------------------------


def test_json_template_takes_the_signals_body():
    raw = json.dumps({"token": BONK, "side": "sell", "id": "x", "strength": 2}).encode()
    signal = to_signal_in("json", raw, NONE, SYMBOLS)
    assert (signal.side, signal.id, signal.strength) == ("sell", "x", 2)


def test_json_template_refuses_unknown_fields():
    raw = json.dumps({"token": BONK, "action": "buy"}).encode()
    with pytest.raises(ValidationError) as exc:
        to_signal_in("json", raw, NONE, SYMBOLS)
    assert path_of(exc) == "$.action"


# -- text -------------------------------------------------------------------------------------


def test_text_line_with_a_mint():
    signal = text(f"buy {BONK}")
    assert (signal.side, signal.token) == ("buy", BONK)


def test_text_line_with_options():
    signal = text(f"  SELL {BONK} strength=4 type=breakout id=a-1 reason=tp  \n")
    assert (signal.side, signal.strength, signal.type, signal.id, signal.reason) == (
        "sell",
        4,
        "breakout",
        "a-1",
        "tp",
    )


def test_text_line_with_a_symbol_of_the_tokens_table():
    signal = text("buy jup")
    assert (signal.token, signal.symbol) == (JUP, "JUP")


def test_text_line_with_an_exchange_market_is_taken_as_written():
    assert text("buy binance:BTC/USDT").token == "binance:BTC/USDT"


@pytest.mark.parametrize(
    "line,path",
    [
        ("", "$"),
        ("buy", "$"),
        (f"hold {BONK}", "$.side"),
        (f"buy {BONK} size=3", "$.size"),
        (f"buy {BONK} strength", "$"),
        (f"buy {BONK} strength=x", "$.strength"),
        (f"buy {BONK} strength=7", "$.strength"),
        (f"buy {BONK} type=a type=b", "$.type"),
        (f"buy {BONK}\nsell {BONK}", "$"),
        ("buy WIF", "$.token"),
        ("buy {{ticker}}", "$"),
    ],
)
def test_bad_text_lines_are_422_naming_the_part(line, path):
    with pytest.raises(ValidationError) as exc:
        text(line)
    assert path_of(exc) == path


def test_text_with_a_control_character_is_refused():
    with pytest.raises(ValidationError, match="control"):
        text(f"buy {BONK} reason=a\x00b")


def test_text_that_is_not_utf8_is_a_400():
    with pytest.raises(MalformedJson):
        to_signal_in("text", b"buy \xff", NONE, SYMBOLS)


# -- signature --------------------------------------------------------------------------------

NOW_MS = 1_796_000_000_000


def test_a_good_signature_passes_and_a_wrong_one_fails():
    verify("s3cret", b"{}", sign("s3cret", b"{}"), None, NOW_MS, 300)
    with pytest.raises(BadSignature):
        verify("s3cret", b"{}", sign("other", b"{}"), None, NOW_MS, 300)
    with pytest.raises(BadSignature):
        verify("s3cret", b"{ }", sign("s3cret", b"{}"), None, NOW_MS, 300)


def test_a_missing_signature_fails():
    with pytest.raises(BadSignature, match="X-Signature"):
        verify("s3cret", b"{}", None, None, NOW_MS, 300)


def test_a_timestamped_signature_must_be_fresh_and_cover_the_timestamp():
    ts = str(NOW_MS // 1000 - 10)
    verify("k", b"x", sign("k", b"x", ts), ts, NOW_MS, 300)
    with pytest.raises(BadSignature):  # signed without the timestamp, sent with one
        verify("k", b"x", sign("k", b"x"), ts, NOW_MS, 300)
    old = str(NOW_MS // 1000 - 301)
    with pytest.raises(BadSignature, match="from the server's clock"):
        verify("k", b"x", sign("k", b"x", old), old, NOW_MS, 300)
    with pytest.raises(BadSignature, match="epoch seconds"):
        verify("k", b"x", sign("k", b"x", "soon"), "soon", NOW_MS, 300)


# -- the hook id ------------------------------------------------------------------------------


def test_hook_ids_are_long_random_and_hashed():
    a, b = new_hook_id(), new_hook_id()
    assert a != b and a.startswith("tdh_") and len(a) == 4 + 43
    assert hook_hash(a) != hook_hash(b) and len(hook_hash(a)) == 64


def test_paths_under_hooks_are_redacted_and_others_kept():
    hook_id = new_hook_id()
    assert redact_hook_path(f"/v1/hooks/{hook_id}") == "/v1/hooks/{hook_id}"
    assert redact_hook_path(f"/v1/hooks/{hook_id}/x") == "/v1/hooks/{hook_id}/x"
    assert redact_hook_path("/v1/hooks") == "/v1/hooks"
    assert redact_hook_path("/v1/signals") == "/v1/signals"


def test_access_log_lines_lose_the_hook_id():
    hook_id = new_hook_id()
    record = logging.LogRecord(
        "aiohttp.access",
        logging.INFO,
        __file__,
        1,
        '"POST %s HTTP/1.1" 202',
        (f"/v1/hooks/{hook_id}",),
        None,
    )
    record.first_request_line = f"POST /v1/hooks/{hook_id}?x=1 HTTP/1.1"
    HookPathFilter().filter(record)
    assert hook_id not in record.getMessage() and "/v1/hooks/{hook_id}" in record.getMessage()
    assert hook_id not in record.first_request_line


@pytest.mark.parametrize("value", ["²", "٣", "9" * 40])
def test_text_line_strength_in_other_digits_is_a_422_not_a_crash(value):
    """A tester's finding: "²".isdigit() is True and int() refused it (a 500)."""
    with pytest.raises(ValidationError):
        text(f"buy {BONK} strength={value}")
