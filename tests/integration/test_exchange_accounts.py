"""Exchange accounts in the daemon (`[venues.ccxt.<account>]`, adapters/app/exchanges.py): the
settings and what they refuse (naming the failing key), which agents may trade an account, and a
real Daemon against the fake Binance (tests/fakes/binance.py): markets into the registry and the
engine, the request journaled before the fake sees it, restart resolution, reconciliation."""

from __future__ import annotations

from pathlib import Path

import pytest
from tradingd.adapters.app.settings import engine_options, load_settings
from tradingd.engine.errors import ValidationError

ACCOUNT = """
[venues.ccxt.binance]
exchange = "binance"
sandbox = true
"""


def settings_of(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # noqa: ANN201
    path = tmp_path / "tradingd.toml"
    path.write_text(text)
    return load_settings(str(path), {"TRADINGD_STORE": "memory", **(env or {})})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ValidationError) as err:
        settings_of(tmp_path, text)
    return err.value.message


def agent(venue: str, quote: str, extra: str = "") -> str:
    return f"""
[[agents]]
id = "x1"
name = "x"
venue = "{venue}"
quote = "{quote}"
{extra}
"""


def test_an_account_parses_with_its_defaults_and_maps_its_venue_to_the_exchange(tmp_path):
    settings = settings_of(tmp_path, ACCOUNT)
    account = settings.venues.ccxt["binance"]
    assert (account.exchange, account.sandbox, account.timeout_ms) == ("binance", True, 10_000)
    assert account.markets_reload_s == 3_600 and account.trading is True
    assert engine_options(settings)["venue_exchanges"] == {"ccxt:binance": "binance"}


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('exchange = "binanse"', "venues.ccxt.binance.exchange", "did you mean 'binance'"),
        ('exchange = "kraken"\nsandbox = true', "venues.ccxt.binance.sandbox", "no testnet"),
        ('exchange = "binance"\ntimeout_ms = 5', "venues.ccxt.binance.timeout_ms", ">= 100"),
        ('exchange = "binance"\nurls = { public = "ftp://x" }', "venues.ccxt.binance.urls", ""),
        ('exchange = "binance"\nmax_order_quote = "1e9"', "venues.ccxt.binance.max_order", ""),
        ('exchange = "binance"\napi_keys = "k"', "venues.ccxt.binance", "api_keys"),
    ],
)
def test_a_bad_account_is_refused_naming_the_key(tmp_path, text, key, reason):
    message = refusal(tmp_path, f"[venues.ccxt.binance]\n{text}\n")
    assert f": {key}" in message and reason in message


def test_an_account_name_is_lower_case(tmp_path):
    message = refusal(tmp_path, '[venues.ccxt.Main]\nexchange = "binance"\n')
    assert ": venues.ccxt:" in message


def test_two_accounts_of_one_exchange_must_share_its_testnet_choice(tmp_path):
    text = ACCOUNT + '[venues.ccxt.second]\nexchange = "binance"\n'
    assert "venues.ccxt.second.sandbox" in refusal(tmp_path, text)


def test_an_exchange_agent_in_usdt_is_accepted(tmp_path):
    settings = settings_of(tmp_path, ACCOUNT + agent("ccxt:binance", "USDT"))
    assert settings.agents[0].venue == "ccxt:binance"


@pytest.mark.parametrize(
    ("venue", "quote", "extra", "key"),
    [
        ("ccxt:binance", "SOL", "", "agents[id=x1].quote"),
        ("ccxt:kraken", "USDT", "", "agents[id=x1].venue"),
        ("ccxt", "USDT", "", "agents[id=x1].venue"),
        ("ccxt:binance", "USDC", 'wallet_id = "w"', "agents[id=x1].wallet_id"),
    ],
)
def test_an_exchange_agent_is_refused_naming_the_key(tmp_path, venue, quote, extra, key):
    assert f": {key}:" in refusal(tmp_path, ACCOUNT + agent(venue, quote, extra))


def test_secrets_come_from_the_environment_and_never_show_in_a_repr(tmp_path):
    text = ACCOUNT + 'api_key = "file-key"\n'
    env = {"TRADINGD_CCXT_BINANCE_API_KEY": "env-key-1234", "TRADINGD_CCXT_BINANCE_SECRET": "s3"}
    settings = settings_of(tmp_path, text, env)
    account = settings.venues.ccxt["binance"]
    assert (account.api_key, account.secret, account.password) == ("env-key-1234", "s3", None)
    shown = repr(settings)
    assert "env-key-1234" not in shown and "s3'" not in shown and "[redacted]" in shown
    assert {"env-key-1234", "s3"} <= set(settings.secret_values())
