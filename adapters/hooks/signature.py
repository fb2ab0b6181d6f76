"""Optional HMAC on hook requests, for senders that can sign (TradingView cannot: its hooks rely
on the secret URL alone).

`X-Signature: sha256=<hex of HMAC-SHA256(secret, message)>`, where the message is the raw body;
or, when the sender also sends `X-Signature-Timestamp: <epoch seconds>`, the bytes
`<timestamp>.<raw body>`, and the timestamp must be within `[hooks] max_signature_age_s` of the
daemon's clock. A captured request then replays only within that window, and a repeated client
`id` is deduplicated anyway. Compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from tradingd.engine.errors import TradingdError

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
SCHEME = "sha256="


class BadSignature(TradingdError):
    """A signed hook's request without a valid `X-Signature` (or with a stale timestamp)."""

    code = "bad_signature"
    status = 401


def sign(secret: str, raw: bytes, timestamp: str | None = None) -> str:
    """The `X-Signature` value for `raw` (what a sender computes; tests and docs use it)."""
    message = raw if timestamp is None else timestamp.encode() + b"." + raw
    return SCHEME + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    raw: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
    max_age_s: int,
) -> None:
    """Raise BadSignature unless `signature` signs `raw` (and `timestamp`, if sent, is fresh)."""
    if not signature:
        raise BadSignature(f"this hook needs a signed request: send {SIGNATURE_HEADER}")
    if timestamp is not None:
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise BadSignature(f"{TIMESTAMP_HEADER} must be epoch seconds")
        if abs(now_ms // 1000 - int(timestamp)) > max_age_s:
            raise BadSignature(
                f"{TIMESTAMP_HEADER} is more than {max_age_s} s from the server's clock",
                {"max_age_s": max_age_s},
            )
    expected = sign(secret, raw, timestamp)
    if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
        raise BadSignature(f"{SIGNATURE_HEADER} does not match the body")
