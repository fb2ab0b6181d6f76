"""Structured logs: one JSON object per line on stdout, with the ids passed in `extra`; or, with
`--log-format pretty` (the default on a terminal), one readable line per record
(adapters/app/log_pretty.py).

Secrets never reach a log line. `RedactSecrets`, installed on the one handler at `configure`
whatever the format, sees every record that is written — ours and the libraries' (aiohttp.server,
aiohttp.access, asyncio) — and renders its message and traceback once, with secrets replaced by
`[redacted]`: bearer credentials and whole `Authorization` values, API keys (`tdk_...`), `key=`/`"passphrase":`
style pairs, the process's own secrets from the environment, and `extra` fields whose name says
key/secret/passphrase."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TextIO

import msgspec
from tradingd.adapters.timestamps import iso_ms

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_encoder = msgspec.json.Encoder(enc_hook=repr)
_SECRET_WORDS = ("key", "secret", "passphrase", "password", "private", "authorization")
REDACTED = "[redacted]"
# Field names with a secret word that name public things: ids, a wallet's public key.
_PUBLIC_NAMES = ("_id", "public_key", "pubkey")
# Environment variables whose values are secrets of this process (bootstrap key, passphrase,
# service API keys, an RPC URL that carries its provider's key).
SECRET_ENV = (
    "TRADINGD_ADMIN_KEY",
    "TRADINGD_WALLET_PASSPHRASE",
    "PYTH_API_KEY",
    "JUPITER_API_KEY",
    "SOLANA_RPC_URL",
)

_SECRET_TEXT = re.compile(
    # an Authorization header's whole value, quoted or not, to the end of its line or quote
    r"(?P<auth>(?i:authorization)[\"']?\s*[:=]\s*)[^\r\n\"']*"
    # a credential after its scheme, anywhere
    r"|(?P<scheme>\b(?i:bearer|basic)\s+)[^\s\"',;]+"
    # this project's API keys, hook ids and hook HMAC secrets, wherever they appear
    r"|(?P<tdk>tdk_|tdh_|tdhs_)[A-Za-z0-9_\-]+"
    # name = value / "name": "value" pairs whose name says it is a secret
    r"|(?P<pair>[\"']?[\w-]*?(?i:key|secret|passphrase|password)[\"']?\s*[:=]\s*)"
    r"(?:\"[^\"]*\"|'[^']*'|[^\s,;&})\]]+)"
)


def _replace(match: re.Match[str]) -> str:
    for group in ("auth", "scheme", "tdk", "pair"):
        prefix = match.group(group)
        if prefix is not None:
            return prefix + REDACTED
    return REDACTED


def _redact(name: str, value: object) -> object:
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith(_PUBLIC_NAMES):
        return REDACTED
    return value


class RedactSecrets(logging.Filter):
    """Renders each record's message, traceback and stack once and removes secrets from them
    (and from `extra` values); formatters then only read `msg` and `exc_text`."""

    def __init__(self, literals: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.literals = tuple(s for s in literals if len(s) >= 8)  # short ones would over-match
        self._tb = logging.Formatter()

    def redact(self, text: str) -> str:
        for secret in self.literals:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SECRET_TEXT.sub(_replace, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self._tb.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STD and not name.startswith("_"):
                setattr(record, name, self._value(name, value))
        return True

    def _value(self, name: str, value: object) -> object:
        value = _redact(name, value)
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._value(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._value("", v) for v in value]
        if isinstance(value, BaseException):
            return self.redact(repr(value))
        return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": iso_ms(int(record.created) * 1000 + int(record.msecs)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STD and not name.startswith("_"):
                doc[name] = _redact(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return _encoder.encode(doc).decode()


LOG_FORMATS = ("auto", "pretty", "json")


def resolve_format(fmt: str, stream: TextIO) -> str:
    """ "auto" is pretty on a terminal and JSON otherwise (systemd, containers, files)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "pretty" if isatty is not None and isatty() else "json"


def configure(level: str = "info", fmt: str = "json", secrets: tuple[str, ...] = ()) -> str:
    """Install the one root handler (stdout); returns the format in use, "pretty" or "json".
    `secrets`: literal values (e.g. API keys from the config file) never to be written."""
    handler = logging.StreamHandler(sys.stdout)
    fmt = resolve_format(fmt, sys.stdout)
    if fmt == "pretty":
        from tradingd.adapters.app.log_pretty import PrettyFormatter

        handler.setFormatter(PrettyFormatter(color=sys.stdout.isatty()))
    else:
        handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets((*(os.environ.get(n, "") for n in SECRET_ENV), *secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return fmt
