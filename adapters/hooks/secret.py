"""The hook id, the secret in a hook's URL: how one is made, hashed and kept out of logs."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets

HOOK_PREFIX = "tdh_"  # like API keys' `tdk_`: greppable, and the log filter redacts it
HOOK_PATH = "/v1/hooks/"
SHOWN_CHARS = 8  # the prefix of a hook id that lists show: `tdh_` and 4 of its 43 random chars
REDACTED_HOOK = "{hook_id}"
_HOOK_IN_PATH = re.compile(r"^/v1/hooks/(?!$)[^/]*")
_HOOK_IN_TEXT = re.compile(r"/v1/hooks/[^/\s?#\"']+")


def new_hook_id() -> str:
    """`tdh_` + 32 random bytes, urlsafe base64 (43 characters): a bearer secret in a URL."""
    return HOOK_PREFIX + secrets.token_urlsafe(32)


def new_hmac_secret() -> str:
    return "tdhs_" + secrets.token_urlsafe(32)


def hook_hash(hook_id: str) -> str:
    """sha256 hex: enough for 256 random bits (as for API keys, no slow KDF is needed)."""
    return hashlib.sha256(hook_id.encode()).hexdigest()


def shown_prefix(hook_id: str) -> str:
    return hook_id[:SHOWN_CHARS] + "…"


def redact_hook_path(path: str) -> str:
    """`path` for a log line: the segment after /v1/hooks/ (a secret, or a record id that an
    operator's typo could have filled with the secret) replaced by `{hook_id}`."""
    if not path.startswith(HOOK_PATH):
        return path
    return _HOOK_IN_PATH.sub(HOOK_PATH + REDACTED_HOOK, path, count=1)


class HookPathFilter(logging.Filter):
    """Rewrites `/v1/hooks/<anything>` in a record's message and text fields to
    `/v1/hooks/{hook_id}`: for access logs, which write the request line as received. The
    daemon runs without one; an embedding app or a test server may not."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if HOOK_PATH in message:
            record.msg, record.args = _HOOK_IN_TEXT.sub(HOOK_PATH + REDACTED_HOOK, message), None
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and HOOK_PATH in value and name != "msg":
                setattr(record, name, _HOOK_IN_TEXT.sub(HOOK_PATH + REDACTED_HOOK, value))
        return True


def redact_access_log() -> None:
    """Install HookPathFilter on aiohttp's access logger (once)."""
    access = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, HookPathFilter) for f in access.filters):
        access.addFilter(HookPathFilter())
