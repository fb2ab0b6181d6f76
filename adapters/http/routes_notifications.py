"""`/v1/notifications`: the outbound notification channels (docs/notifications.md). Read lists
every channel, from the config file and from the API, with its delivery state and no secret;
admin creates a channel at runtime (the config file's schema and rules), removes one it
created, and queues a test message.

A body's secrets (a bot token, a Discord URL, an HMAC key) are never echoed, logged or put in an
error: errors name the field, and the values go to the log filter before the channel starts."""

from __future__ import annotations

import asyncio
import os

import msgspec
from aiohttp import web
from tradingd.adapters.http.codec import daemon_of, decode, json_response, paginate, read_raw
from tradingd.adapters.http.openapi import PAGED, Route
from tradingd.adapters.notify.channel_file import StoredChannel, hide_in_logs
from tradingd.adapters.notify.config import ChannelSettings, channel_secrets, resolve_channel
from tradingd.adapters.notify.delivery import ChannelSender
from tradingd.adapters.notify.notifier import Notifier
from tradingd.adapters.notify.schemas import (
    ChannelOut,
    ChannelPage,
    ChannelRemoved,
    TestQueued,
    target_host,
)
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine.errors import Conflict, NotFound, ValidationError

_channel_in = msgspec.json.Decoder(ChannelSettings)
_FIELDS = frozenset(ChannelSettings.__struct_fields__)


def channel_out(notifier: Notifier, sender: ChannelSender) -> ChannelOut:
    health = sender.health()
    created = notifier.created_at.get(sender.name)
    return ChannelOut(
        name=sender.name,
        kind=sender.settings.kind,
        origin=notifier.origins[sender.name],
        events=list(sender.settings.events),
        host=target_host(sender),
        chat_id=sender.settings.chat_id,
        status=health["status"],
        queued=health["queued"],
        sent=health["sent"],
        failed=health["failed"],
        dropped=health["dropped"],
        retries=health["retries"],
        last_sent_at=health.get("last_sent_at"),
        last_error=health.get("last_error"),
        created_at=iso_ms(created) if created else None,
    )


async def list_channels(request: web.Request) -> web.Response:
    notifier = daemon_of(request).notifier
    if notifier is None:
        paginate(request, [], lambda _: (0, ""))  # the query is checked all the same (422)
        return json_response(ChannelPage(items=[], next_cursor=None))

    def order(sender: ChannelSender) -> tuple[int, str]:
        return notifier.created_at.get(sender.name, 0), sender.name  # the file's first

    senders = sorted(notifier.senders.values(), key=order)
    page, cursor = paginate(request, senders, order)
    return json_response(
        ChannelPage(items=[channel_out(notifier, s) for s in page], next_cursor=cursor)
    )


def _read_channel(raw: bytes) -> ChannelSettings:
    """The config file's schema; a rule checked after decoding ("chat_id is required ...")
    is given the path of the field it names."""
    try:
        return decode(raw, _channel_in)
    except ValidationError as exc:
        field = exc.message.split(" ", 1)[0].rstrip(":")
        if exc.details.get("path") == "$" and field in _FIELDS:
            raise ValidationError(exc.message, f"$.{field}") from None
        raise


async def create_channel(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    channel = _read_channel(await read_raw(request))
    resolved = resolve_channel(channel, os.environ)  # 422 at the field for an unset env:VAR
    store = daemon.notify_channels
    async with store.lock:
        daemon.start_notifications()  # the stored channels first: their names are taken
        notifier = daemon.build_notifier()
        notifier.check_new(channel.name)
        created_at = daemon.engine.clock()
        hide_in_logs(channel_secrets(resolved))
        # durable before it answers 201 (fsync): off the event loop
        await asyncio.to_thread(store.add, StoredChannel(created_at=created_at, channel=channel))
        sender = notifier.add_channel(resolved, "api", created_at)
        daemon.start_notifications()  # a notifier built just now starts here
    return json_response(channel_out(notifier, sender), 201)


async def delete_channel(request: web.Request) -> web.Response:
    daemon, name = daemon_of(request), request.match_info["name"]
    store = daemon.notify_channels
    async with store.lock:
        notifier = daemon.notifier
        if notifier is not None and notifier.origins.get(name) == "config":
            raise Conflict(
                f"channel {name!r} is in the config file: remove it there and restart",
                {"name": name, "origin": "config"},
            )
        removed = await asyncio.to_thread(store.remove, name)
        running = notifier is not None and name in notifier.senders
        if not (removed or running):
            raise NotFound("unknown notification channel", {"name": name})
        dropped = 0
        if running:
            assert notifier is not None
            before = (sender := notifier.senders[name]).stats.dropped
            await notifier.remove_channel(name)
            dropped = sender.stats.dropped - before
    return json_response(ChannelRemoved(name=name, running=running, dropped=dropped))


async def test_channel(request: web.Request) -> web.Response:
    notifier, name = daemon_of(request).notifier, request.match_info["name"]
    if notifier is None:
        raise NotFound("unknown notification channel", {"name": name})
    notifier.queue_test(name)
    return json_response(TestQueued(name=name, queued=len(notifier.senders[name].queue)), 202)


ROUTES = [
    Route(
        "GET",
        "/v1/notifications",
        list_channels,
        "List notification channels (config file and API) with their delivery state",
        "notifications",
        "read",
        {200: ChannelPage},
        query=PAGED,
        description="Every channel, the config file's first: kind, events, `origin` (`config` "
        "or `api`), the `host` it sends to (never a URL's path, a token or a secret) and "
        "the counters `/health` shows (queued, sent, failed, dropped, retries, last_sent_at, "
        "last_error).",
    ),
    Route(
        "POST",
        "/v1/notifications",
        create_channel,
        "Create a notification channel; it starts sending at once and survives restarts",
        "notifications",
        "admin",
        {201: ChannelOut},
        body=ChannelSettings,
        errors=(409,),
        description="The body is one `[[notify.channels]]` entry as JSON, with the config "
        "file's rules (422 naming the field). Secrets (`bot_token`, `secret`, a Discord "
        "`url`) are written out or given as `env:VAR_NAME`; they are never answered or "
        "logged, and are stored in `<data_dir>/notify_channels.json` (0600) because sending "
        "needs them. 409 for a name in use or past 16 channels in all.",
    ),
    Route(
        "DELETE",
        "/v1/notifications/{name}",
        delete_channel,
        "Stop and remove a channel created over the API",
        "notifications",
        "admin",
        {200: ChannelRemoved},
        errors=(404, 409),
        description="What it still held is dropped (`dropped`). A channel of the config file "
        "is 409: remove it there and restart.",
    ),
    Route(
        "POST",
        "/v1/notifications/{name}/test",
        test_channel,
        "Queue a test message on a channel",
        "notifications",
        "admin",
        {202: TestQueued},
        errors=(404,),
        description="An alert with code `notification_test`, whatever events the channel "
        "takes; watch its `sent` and `last_error` in the list.",
    ),
]
