"""Wire types of the notification routes (`/v1/notifications`, docs/notifications.md): a channel
as listed, never with a secret (the host it sends to, not its URL), and its delivery state as
`/health` shows it. The create body is the config file's own schema, ChannelSettings."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from msgspec import Meta, Struct
from tradingd.adapters.notify.config import ChannelKind, EventKind
from tradingd.adapters.notify.delivery import ChannelSender

Timestamp = Annotated[str, Meta(description="ISO-8601 UTC with milliseconds")]


class ChannelOut(Struct, kw_only=True):
    name: str
    kind: ChannelKind
    origin: Literal["config", "api"]
    events: list[EventKind]
    host: Annotated[
        str | None, Meta(description="where it sends: host[:port] only, never the URL's path")
    ]
    chat_id: int | str | None = None  # telegram
    status: Literal["ok", "sending", "failing"]
    queued: int
    sent: int
    failed: int
    dropped: int
    retries: int
    last_sent_at: Timestamp | None = None
    last_error: str | None = None
    created_at: Timestamp | None = None  # api channels


class ChannelPage(Struct, kw_only=True):
    items: list[ChannelOut]
    next_cursor: str | None


class ChannelRemoved(Struct, kw_only=True):
    name: str
    running: Annotated[bool, Meta(description="false: it was stored but could not start")]
    dropped: Annotated[int, Meta(description="notifications still queued, dropped with it")]


class TestQueued(Struct, kw_only=True):
    name: str
    queued: int


def target_host(sender: ChannelSender) -> str | None:
    """The host[:port] a channel sends to; a Discord URL's path is its token, a webhook's may
    be one, and Telegram's holds the bot token: none of it is shown."""
    s = sender.settings
    url = s.api_url if s.kind == "telegram" else s.url
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if host is None:
        return None
    return f"{host}:{port}" if port is not None else host
