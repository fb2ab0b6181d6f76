"""The three channels' wire formats: what is POSTed and what an answer means.

- Telegram Bot API `sendMessage`: POST <api_url>/bot<token>/sendMessage, JSON {chat_id, text,
  parse_mode: "HTML", disable_web_page_preview}; answers {"ok": true, "result": Message} or
  {"ok": false, "error_code", "description", "parameters": {"retry_after": s}} (429).
- Discord execute webhook: POST <webhook url>, JSON {"content", "allowed_mentions"}; answers 204
  (or 200 with ?wait=true); 429 {"message", "retry_after": s (float), "global"} with
  Retry-After / X-RateLimit-Reset-After headers.
- Generic webhook: POST <url> the notice's JSON, signed: X-Tradingd-Signature:
  sha256=<hex HMAC-SHA256(secret, body)>, X-Tradingd-Timestamp (epoch s, also `sent_at` in the
  signed body), X-Tradingd-Event-Id (the same on every retry of one notice); any 2xx is success.

Text messages batch consecutive notices up to the service's length limit. A request's URL may
hold a secret (Telegram's token, Discord's webhook token): it is never logged nor put in an
error (delivery.py logs the channel's name)."""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import msgspec
from msgspec import Struct
from tradingd.adapters.notify.config import ChannelSettings
from tradingd.adapters.notify.messages import Text, json_of, text_of
from tradingd.adapters.notify.notices import Notice

SIGNATURE_HEADER: Final = "X-Tradingd-Signature"
TIMESTAMP_HEADER: Final = "X-Tradingd-Timestamp"
EVENT_ID_HEADER: Final = "X-Tradingd-Event-Id"
TELEGRAM_MAX_CHARS: Final = 4096
DISCORD_MAX_CHARS: Final = 2000
MAX_BATCH: Final = 20  # notices joined into one text message at most


class Request(Struct, frozen=True):
    url: str  # may hold a secret: never logged
    body: bytes
    headers: dict[str, str]
    notices: int  # how many notices it carries


class Outcome(Struct, frozen=True):
    """ok; or not, with `retry` (a transient answer: 429, 5xx) and the server's `retry_after_s`;
    `reason` is short text without secrets (an HTTP status, the API's description)."""

    ok: bool
    retry: bool = False
    retry_after_s: float | None = None
    reason: str = ""


OK: Final = Outcome(True)


class Wire(Protocol):
    def request(self, notices: Sequence[Notice], dropped: int, batch_id: str) -> Request:
        """One request carrying the first notices of `notices` (at least one); `dropped` notices
        were dropped before them (queue full), said in the message; `batch_id` is the same on
        every attempt of one batch."""
        ...

    def outcome(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome: ...


class _TelegramAnswer(Struct):
    ok: bool = False
    description: str = ""
    parameters: dict[str, object] = {}


class _DiscordLimit(Struct):
    retry_after: float | None = None


def _status_outcome(status: int, reason: str = "") -> Outcome:
    if 200 <= status < 300:
        return OK
    retry = status == 429 or status >= 500 or status == 408
    return Outcome(False, retry=retry, reason=reason or f"HTTP {status}")


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds else None


def _batch_text(
    notices: Sequence[Notice], limit: int, render: object, dropped: int
) -> tuple[str, int]:
    """Join rendered notices while they fit in `limit` characters (a single long one is cut)."""
    parts: list[str] = []
    size = 0
    note = f"({dropped} earlier notifications dropped: queue full)" if dropped else ""
    budget = limit - len(note) - 2
    for notice in notices[:MAX_BATCH]:
        text = render(text_of(notice))  # type: ignore[operator]
        if parts and size + len(text) + 2 > budget:
            break
        if len(text) > budget:
            text = text[: budget - 1] + "…"
        parts.append(text)
        size += len(text) + 2
    if note:
        parts.append(note)
    return "\n\n".join(parts), len(parts) - (1 if note else 0)


class TelegramWire:
    def __init__(self, settings: ChannelSettings) -> None:
        assert settings.bot_token is not None and settings.chat_id is not None
        self.url = f"{settings.api_url.rstrip('/')}/bot{settings.bot_token}/sendMessage"
        self.chat_id = settings.chat_id

    @staticmethod
    def render(text: Text) -> str:
        lines = "\n".join(html.escape(line, quote=False) for line in text.lines)
        title = f"<b>{html.escape(text.title, quote=False)}</b>"
        return f"{title}\n{lines}" if lines else title

    def request(self, notices: Sequence[Notice], dropped: int, batch_id: str) -> Request:
        text, n = _batch_text(notices, TELEGRAM_MAX_CHARS, self.render, dropped)
        body = msgspec.json.encode(
            {
                "chat_id": self.chat_id,
                "text": text,
                "parse_mode": "HTML",
                "disable_web_page_preview": True,
            }
        )
        return Request(self.url, body, {"Content-Type": "application/json"}, n)

    def outcome(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        try:
            answer = msgspec.json.decode(body, type=_TelegramAnswer)
        except msgspec.DecodeError:
            answer = None
        if answer is not None and answer.ok and 200 <= status < 300:
            return OK
        reason = answer.description[:200] if answer is not None else ""
        migrated = answer.parameters.get("migrate_to_chat_id") if answer is not None else None
        if isinstance(migrated, int):  # the group became a supergroup: chat_id must change
            reason += f" (set chat_id = {migrated})"
        out = _status_outcome(status if status >= 300 else 502, reason)
        if status == 429:
            after = answer.parameters.get("retry_after") if answer is not None else None
            return Outcome(False, True, _seconds(after), out.reason)
        return out


_DISCORD_ESCAPE = str.maketrans({c: "\\" + c for c in "\\*_~`|>#-["})


class DiscordWire:
    def __init__(self, settings: ChannelSettings) -> None:
        assert settings.url is not None
        self.url = settings.url

    @staticmethod
    def render(text: Text) -> str:
        title = f"**{text.title.translate(_DISCORD_ESCAPE)}**"
        lines = "\n".join(line.translate(_DISCORD_ESCAPE) for line in text.lines)
        return f"{title}\n{lines}" if lines else title

    def request(self, notices: Sequence[Notice], dropped: int, batch_id: str) -> Request:
        text, n = _batch_text(notices, DISCORD_MAX_CHARS, self.render, dropped)
        # No @everyone / role / user pings, whatever an alert's text says.
        body = msgspec.json.encode({"content": text, "allowed_mentions": {"parse": []}})
        return Request(self.url, body, {"Content-Type": "application/json"}, n)

    def outcome(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        out = _status_outcome(status)
        if status != 429:
            return out
        after: float | None = None
        try:
            after = msgspec.json.decode(body, type=_DiscordLimit).retry_after
        except msgspec.DecodeError:
            pass
        if after is None:
            after = _seconds(headers.get("Retry-After") or headers.get("X-RateLimit-Reset-After"))
        return Outcome(False, True, after, out.reason)


def sign(secret: str, body: bytes) -> str:
    """The X-Tradingd-Signature value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookWire:
    """One notice per request (a receiver handles one event per call)."""

    def __init__(self, settings: ChannelSettings) -> None:
        assert settings.url is not None and settings.secret is not None
        self.url = settings.url
        self.secret = settings.secret
        self.channel = settings.name

    def request(self, notices: Sequence[Notice], dropped: int, batch_id: str) -> Request:
        now = int(time.time())
        body = json_of(notices[0], self.channel, batch_id, dropped, now)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            TIMESTAMP_HEADER: str(now),
            EVENT_ID_HEADER: batch_id,
        }
        return Request(self.url, body, headers, 1)

    def outcome(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        out = _status_outcome(status)
        if status == 429:
            return Outcome(False, True, _seconds(headers.get("Retry-After")), out.reason)
        return out


def wire_for(settings: ChannelSettings) -> Wire:
    if settings.kind == "telegram":
        return TelegramWire(settings)
    if settings.kind == "discord":
        return DiscordWire(settings)
    return WebhookWire(settings)
