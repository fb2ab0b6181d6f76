"""Agent config: defaults, and validation errors that name the failing field path."""

from __future__ import annotations

import pytest
from tradingd.engine.config import AgentConfig, config_from_builtins, config_from_json
from tradingd.engine.errors import ValidationError


def test_empty_config_takes_every_default():
    cfg = config_from_builtins({})
    assert cfg == AgentConfig()
    assert cfg.stop_loss.default_pct == -32 and cfg.stop_loss.mode == "fixed"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"signals": {"min_strength": 9}}, "$.signals.min_strength"),
        ({"stop_loss": {"mode": "wild"}}, "$.stop_loss.mode"),
        ({"stop_loss": {"trailing": 5}}, "$.stop_loss"),
        ({"sizing": {"amount": "-5"}}, "$.sizing.amount"),
        ({"sizing": {"amount": 5}}, "$.sizing.amount"),
        ({"sizing": {"amount": "99999999999999999999"}}, "$.sizing.amount"),
        (
            {
                "take_profit": {
                    "levels": [{"gain_pct": 50, "sell_pct": 60}, {"gain_pct": 40, "sell_pct": 10}]
                }
            },
            "$.take_profit.levels[1]",
        ),
        (
            {
                "take_profit": {
                    "levels": [{"gain_pct": 10, "sell_pct": 60}, {"gain_pct": 40, "sell_pct": 60}]
                }
            },
            "$.take_profit.levels",
        ),
        (
            {"stop_loss": {"mode": "custom", "levels": [{"gain_pct": 50, "stop_pct": 60}]}},
            "$.stop_loss.levels[0].stop_pct",
        ),
        ({"signals": {"token_filter": "allow", "tokens": ["not-a-mint"]}}, "$.signals.tokens[0]"),
        ({"stale_trade": {"min_pnl_pct": 5, "max_pnl_pct": 1}}, "$.stale_trade.min_pnl_pct"),
        ({"dca": {"levels": [{"drop_pct": 10, "buy_pct": 5}]}}, "$.dca.levels[0].drop_pct"),
    ],
)
def test_invalid_configs_name_the_failing_path(raw, path):
    with pytest.raises(ValidationError) as err:
        config_from_builtins(raw)
    assert err.value.path == path


def test_json_decoding_rejects_unknown_fields_with_path():
    with pytest.raises(ValidationError) as err:
        config_from_json(b'{"limits": {"max_open": 3}}')
    assert err.value.path == "$.limits"


def test_the_pyth_api_key_never_shows_in_the_settings_repr():
    from tradingd.adapters.app.settings import Settings

    settings = Settings()
    settings.feeds.pyth.api_key = "pyth-secret-key"
    assert "pyth-secret-key" not in repr(settings)
    assert "[redacted]" in repr(settings.feeds.pyth)


def test_a_bad_token_registry_entry_is_named_by_its_mint(tmp_path):
    import pytest
    from tradingd.adapters.app.settings import load_settings
    from tradingd.engine.errors import ValidationError

    path = tmp_path / "t.toml"
    path.write_text(
        '[tokens.EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v]\nsymbol = "USDC"\n'
        '[tokens.So11111111111111111111111111111111111111112]\npyth_id = "xyz"\n'
    )
    with pytest.raises(ValidationError) as err:
        load_settings(str(path), {})
    assert "tokens.So11111111111111111111111111111111111111112.pyth_id" in err.value.message


def test_a_source_name_a_letter_off_a_daemon_feed_is_refused(tmp_path):
    import pytest
    from tradingd.adapters.app.settings import load_settings
    from tradingd.engine.errors import ValidationError

    path = tmp_path / "t.toml"
    path.write_text('[prices]\nsources = ["pyht", "dexscreener", "my-oracle"]\n')
    with pytest.raises(ValidationError) as err:
        load_settings(str(path), {})
    assert "prices.sources[0]: unknown source 'pyht': did you mean 'pyth'?" in err.value.message
    path.write_text('[prices]\nsources = ["pyth", "my-oracle"]\n')
    assert load_settings(str(path), {}).prices.sources == ["pyth", "my-oracle"]


def test_a_dexscreener_quote_is_a_known_symbol_or_a_mint(tmp_path):
    import pytest
    from tradingd.adapters.app.settings import load_settings
    from tradingd.engine.errors import ValidationError

    path = tmp_path / "t.toml"
    path.write_text('[feeds.dexscreener]\nquote_symbols = ["sol", "FOO"]\n')
    with pytest.raises(ValidationError) as err:
        load_settings(str(path), {})
    assert "feeds.dexscreener.quote_symbols[1]" in err.value.message
