"""Operator routes: the kill switch (`/v1/halt`) and API keys (`/v1/keys`). The kill switch
stays usable while the daemon drains: stopping buys is always safe."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web
from tradingd.adapters.http.auth import ApiKey
from tradingd.adapters.http.codec import API_KEY, daemon_of, json_response, paginate, read_body
from tradingd.adapters.http.openapi import PAGED, Route
from tradingd.adapters.http.schemas import (
    HaltIn,
    HaltOut,
    KeyCreated,
    KeyIn,
    KeyOut,
    KeyPage,
)
from tradingd.adapters.timestamps import iso_ms

log = logging.getLogger("tradingd.http")
_halt_in = msgspec.json.Decoder(HaltIn)
_key_in = msgspec.json.Decoder(KeyIn)


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        scopes=sorted(key.scopes),  # type: ignore[arg-type]
        created_at=iso_ms(key.created_at),
    )


async def post_halt(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    body = await read_body(request, _halt_in, optional=True)
    orders = daemon.runtime.apply(daemon.engine.set_halt, body.buys, body.flatten)
    if daemon.shard_intake is not None:  # a shard down now halts buys when it comes back
        await daemon.shard_intake.record_halt(body.buys)
    log.warning(
        "halt set",
        extra={
            "buys": body.buys,
            "flatten": body.flatten,
            "orders": len(orders),
            "key_id": request[API_KEY].id,
        },
    )
    return json_response(HaltOut(halted=daemon.engine.halted_buys, flatten_order_ids=orders))


async def delete_halt(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    daemon.runtime.apply(daemon.engine.set_halt, False, False)
    if daemon.shard_intake is not None:
        await daemon.shard_intake.record_halt(False)
    log.warning("halt lifted", extra={"key_id": request[API_KEY].id})
    return json_response(HaltOut(halted=daemon.engine.halted_buys, flatten_order_ids=[]))


async def post_key(request: web.Request) -> web.Response:
    body = await read_body(request, _key_in)
    # the key file is fsynced: off the event loop, trading never waits on the disk
    key, raw = await asyncio.to_thread(
        daemon_of(request).keys.create, body.name, frozenset(body.scopes)
    )
    if (shared := daemon_of(request).shared_keys) is not None:
        shared.poke()  # the cluster's other processes take it within a sync
    out = key_out(key)
    return json_response(
        KeyCreated(id=out.id, name=out.name, scopes=out.scopes, created_at=out.created_at, key=raw),
        201,
    )


async def list_keys(request: web.Request) -> web.Response:
    keys = daemon_of(request).keys.list()
    page, cursor = paginate(request, keys, lambda k: (k.created_at, k.id))
    return json_response(KeyPage(items=[key_out(k) for k in page], next_cursor=cursor))


async def delete_key(request: web.Request) -> web.Response:
    """Revoke the key and close its WebSockets at once (alert `key_revoked`, close 1008)."""
    daemon, key_id = daemon_of(request), request.match_info["key_id"]
    await asyncio.to_thread(daemon.keys.revoke, key_id)
    if daemon.shared_keys is not None:
        daemon.shared_keys.poke()
    if daemon.hub is not None and (closed := daemon.hub.close_key(key_id)):
        log.info("websockets of a revoked key closed", extra={"key_id": key_id, "count": closed})
    return web.Response(status=204)


_EVERY_SHARD = (
    "With agent shards, applied on every shard: 503 `shards_incomplete` names the shards that "
    "did not confirm it (sending it again is safe)."
)

ROUTES = [
    Route(
        "POST",
        "/v1/halt",
        post_halt,
        "Kill switch: stop every buy (and flatten)",
        "admin",
        "admin",
        {200: HaltOut},
        body=HaltIn,
        body_optional=True,
        cluster_wide=True,
        description=_EVERY_SHARD,
    ),
    Route(
        "DELETE",
        "/v1/halt",
        delete_halt,
        "Lift the halt",
        "admin",
        "admin",
        {200: HaltOut},
        cluster_wide=True,
        description=_EVERY_SHARD,
    ),
    Route(
        "POST",
        "/v1/keys",
        post_key,
        "Create an API key (the secret is shown once)",
        "admin",
        "admin",
        {201: KeyCreated},
        body=KeyIn,
    ),
    Route(
        "GET",
        "/v1/keys",
        list_keys,
        "List API keys (no secrets)",
        "admin",
        "admin",
        {200: KeyPage},
        query=PAGED,
    ),
    Route(
        "DELETE",
        "/v1/keys/{key_id}",
        delete_key,
        "Revoke an API key; its open WebSockets are closed at once (1008, alert key_revoked)",
        "admin",
        "admin",
        {204: None},
    ),
]
