"""The daemon's log handler (adapters/app/logs.configure) keeps secrets out of every line it writes:
library records, their tracebacks, messages, and `extra` fields."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage
from tradingd.adapters.app import logs

KEY = "tdk_" + "Q" * 43
BOOTSTRAP = "plain-bootstrap-key-without-prefix"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def daemon_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The daemon's log handler, writing into a buffer instead of stdout."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("TRADINGD_ADMIN_KEY", BOOTSTRAP)
    monkeypatch.setenv("TRADINGD_WALLET_PASSPHRASE", PASSPHRASE)
    logs.configure("debug")
    out = io.StringIO()
    (handler,) = root.handlers
    handler.setStream(out)  # type: ignore[attr-defined]
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_aiohttp_tracebacks_quoting_an_authorization_header_are_redacted(
    daemon_logging: io.StringIO,
):
    try:
        raise BadHttpMessage(
            f"Invalid header value char:\n\n  b'Authorization: Bearer {KEY}\\x01abc'\n    ^"
        )
    except BadHttpMessage:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "1.2.3.4")
    out = daemon_logging.getvalue()
    assert KEY not in out and "abc'" not in out
    (line,) = lines(out)
    assert line["logger"] == "aiohttp.server" and "[redacted]" in str(line["exc"])


@pytest.mark.parametrize(
    ("message", "args"),
    [
        ("request headers: %s", ({"Authorization": f"Bearer {KEY}"},)),
        ("access %s", (f"GET /?api_key={KEY.removeprefix('tdk_')} HTTP/1.1",)),
        ("unlock with passphrase=%s failed", (PASSPHRASE.replace(" ", "_"),)),
        ('{"passphrase": "%s", "name": "w"}', (PASSPHRASE,)),
        ("bootstrap key in use: %s", (BOOTSTRAP,)),
        ("basic auth: Basic %s", ("dXNlcjpwYXNzd29yZA==",)),
    ],
)
def test_secrets_in_any_message_are_redacted(
    daemon_logging: io.StringIO, message: str, args: tuple
):
    logging.getLogger("aiohttp.access").warning(message, *args)
    out = daemon_logging.getvalue()
    for secret in (KEY.removeprefix("tdk_"), PASSPHRASE, BOOTSTRAP, "dXNlcjpwYXNzd29yZA=="):
        assert secret not in out and secret.replace(" ", "_") not in out
    assert "[redacted]" in out


def test_secrets_in_extra_fields_are_redacted_and_ids_kept(daemon_logging: io.StringIO):
    logging.getLogger("tradingd.http").info(
        "key created",
        extra={
            "key_id": "k1",
            "agent_id": "alpha",
            "headers": {"Authorization": f"Bearer {KEY}"},
            "note": f"sent {KEY}",
            "passphrase": PASSPHRASE,
        },
    )
    (line,) = lines(daemon_logging.getvalue())
    assert KEY not in json.dumps(line) and PASSPHRASE not in json.dumps(line)
    assert (line["key_id"], line["agent_id"]) == ("k1", "alpha")


@pytest.fixture
def pretty_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The daemon's log handler in `--log-format pretty`, writing into a buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("TRADINGD_ADMIN_KEY", BOOTSTRAP)
    monkeypatch.setenv("TRADINGD_WALLET_PASSPHRASE", PASSPHRASE)
    assert logs.configure("debug", "pretty") == "pretty"
    out = io.StringIO()
    (handler,) = root.handlers
    handler.setStream(out)  # type: ignore[attr-defined]
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def test_pretty_lines_are_redacted_like_json_ones(pretty_logging: io.StringIO):
    try:
        raise BadHttpMessage(f"Invalid header value char:\n\n  b'Authorization: Bearer {KEY}'")
    except BadHttpMessage:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "1.2.3.4")
    logging.getLogger("aiohttp.access").warning("bootstrap key in use: %s", BOOTSTRAP)
    logging.getLogger("tradingd.http").info(
        "key created",
        extra={"key_id": "k1", "note": f"sent {KEY}", "passphrase": PASSPHRASE},
    )
    out = pretty_logging.getvalue()
    for secret in (KEY, KEY.removeprefix("tdk_"), BOOTSTRAP, PASSPHRASE):
        assert secret not in out
    assert out.count("[redacted]") >= 4 and "key_id=k1" in out
    assert not out.lstrip().startswith("{")  # the pretty formatter, not JSON


def test_auto_is_json_off_a_terminal_and_pretty_on_one():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("auto", Tty()) == "pretty"
    assert logs.resolve_format("json", Tty()) == "json"


def test_service_keys_and_a_keyed_rpc_url_from_env_or_file_are_never_written(
    monkeypatch: pytest.MonkeyPatch,
):
    from tradingd.adapters.app.settings import load_settings

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    jup_env, rpc_env = "jupiter-env-key-0123456789", "https://rpc.example/?api-key=rpc-secret-42"
    monkeypatch.setenv("JUPITER_API_KEY", jup_env)
    monkeypatch.setenv("SOLANA_RPC_URL", rpc_env)
    settings = load_settings(None, {"TRADINGD_STORE": "memory"})
    settings.feeds.pyth.api_key = "pyth-file-key-0123456789"
    try:
        logs.configure("debug", secrets=settings.secret_values())
        out = io.StringIO()
        (handler,) = root.handlers
        handler.setStream(out)  # type: ignore[attr-defined]
        log = logging.getLogger("aiohttp.client")
        log.warning("GET %s failed", rpc_env)
        log.warning("x-api-key was %s, pyth %s", jup_env, "pyth-file-key-0123456789")
        text = out.getvalue()
        for secret in (jup_env, "rpc-secret-42", "pyth-file-key-0123456789"):
            assert secret not in text
        assert text.count("[redacted]") >= 3
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_wallets_public_key_is_not_taken_for_a_secret(daemon_logging: io.StringIO):
    """Attack case L5: `public_key` holds the word "key" but is public; it stays readable."""
    pub = "GfsJWjmGXMfct8JMR9Lm9ySUnniZbnGUTQDbT8ipWf9U"
    logging.getLogger("tradingd.venues").info(
        "reconciled", extra={"public_key": pub, "api_key": "s3cr3t-value-123"}
    )
    (line,) = lines(daemon_logging.getvalue())
    assert line["public_key"] == pub and line["api_key"] == "[redacted]"
