"""Structured logs: one JSON object per line on stdout, with the ids passed in `extra`.

Secrets never reach a log line: fields whose name says key/secret/passphrase are redacted."""

from __future__ import annotations

import logging
import sys
import time

import msgspec

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_encoder = msgspec.json.Encoder(enc_hook=repr)
_SECRET_WORDS = ("key", "secret", "passphrase", "password", "token_secret", "private")
def _redact(name: str, value: object) -> object:
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("_id"):
        return "[redacted]"
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STD and not name.startswith("_"):
                doc[name] = _redact(name, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(doc).decode()


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
