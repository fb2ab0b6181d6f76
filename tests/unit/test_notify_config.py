"""`[[notify.channels]]` in the TOML: parsed, validated with messages naming the key, `env:`
secrets resolved from the environment, and no secret in a repr or an error message."""

from __future__ import annotations

from pathlib import Path

import pytest
from tradingd.adapters.app.settings import load_settings
from tradingd.engine.errors import ValidationError

TOKEN = "123456789:AAF-secret-bot-token-value"


def _load(tmp_path: Path, body: str, env: dict[str, str] | None = None):
    path = tmp_path / "c.toml"
    path.write_text(body)
    return load_settings(str(path), {"TRADINGD_STORE": "memory", **(env or {})})


TELEGRAM = """
[[notify.channels]]
name = "ops"
kind = "telegram"
bot_token = "env:TG_TOKEN"
chat_id = -1001234
events = ["fills", "breakers"]
queue_max = 50
max_retries = 2
timeout_s = 3
"""


def test_a_telegram_channel_takes_its_token_from_the_environment(tmp_path: Path) -> None:
    settings = _load(tmp_path, TELEGRAM, {"TG_TOKEN": TOKEN})
    (channel,) = settings.notify.channels
    assert (channel.name, channel.kind, channel.bot_token, channel.chat_id) == (
        "ops", "telegram", TOKEN, -1001234,
    )  # fmt: skip
    assert channel.api_url == "https://api.telegram.org"
    assert (channel.events, channel.queue_max, channel.max_retries, channel.timeout_s) == (
        ["fills", "breakers"], 50, 2, 3.0,
    )  # fmt: skip


def test_the_resolved_token_is_a_secret_for_the_log_filter_and_not_in_the_repr(
    tmp_path: Path,
) -> None:
    settings = _load(tmp_path, TELEGRAM, {"TG_TOKEN": TOKEN})
    assert TOKEN in settings.secret_values()
    assert TOKEN not in repr(settings.notify)


def test_an_unset_env_secret_is_refused_naming_the_channel_and_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        _load(tmp_path, TELEGRAM)
    assert "notify.channels[0] (ops).bot_token" in err.value.message
    assert "TG_TOKEN is not set" in err.value.message


def test_an_unknown_event_kind_is_refused_at_its_key(tmp_path: Path) -> None:
    body = TELEGRAM.replace('["fills", "breakers"]', '["fills", "trades"]')
    with pytest.raises(ValidationError) as err:
        _load(tmp_path, body, {"TG_TOKEN": TOKEN})
    assert "notify.channels[0].events[1]" in err.value.message


def test_a_webhook_without_a_secret_is_refused(tmp_path: Path) -> None:
    body = '[[notify.channels]]\nname = "hook"\nkind = "webhook"\nurl = "http://127.0.0.1:9/h"\n'
    with pytest.raises(ValidationError) as err:
        _load(tmp_path, body)
    assert "secret is required for a webhook channel" in err.value.message


def test_two_channels_with_one_name_are_refused(tmp_path: Path) -> None:
    one = '[[notify.channels]]\nname = "d"\nkind = "discord"\nurl = "http://127.0.0.1:9/x"\n'
    with pytest.raises(ValidationError) as err:
        _load(tmp_path, one + one)
    assert "name 'd' is used twice" in err.value.message


def test_a_secret_given_in_the_file_is_never_in_an_error(tmp_path: Path) -> None:
    body = TELEGRAM.replace('"env:TG_TOKEN"', f'"{TOKEN}"').replace("chat_id = -1001234\n", "")
    with pytest.raises(ValidationError) as err:
        _load(tmp_path, body)
    assert "chat_id is required" in err.value.message
    assert TOKEN not in err.value.message


def test_no_notify_section_means_no_channels(tmp_path: Path) -> None:
    assert _load(tmp_path, "").notify.channels == []
