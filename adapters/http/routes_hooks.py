"""`/v1/hooks`: header-less signal ingest (docs/hooks.md). `POST /v1/hooks/{hook_id}` needs no
key: the hook id in the URL is the secret, bound to a `signals` key whose signal it submits
through the same path as `POST /v1/signals`. Admin routes create, list and revoke hooks.

The hook id never reaches a log line, a metric label or an error body: a hook that does not
answer (unknown, revoked, its key revoked or without `signals`) is one 404 with one body, and
the error log's path is redacted (secret.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from tradingd.adapters.hooks.config import HooksSettings
from tradingd.adapters.hooks.schemas import (
    HookCounts,
    HookCreated,
    HookIn,
    HookOut,
    HookPage,
    TradingViewAlert,
)
from tradingd.adapters.hooks.secret import HOOK_PATH, redact_access_log
from tradingd.adapters.hooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tradingd.adapters.hooks.store import Hook, HookStore, bound_key, hooks_path
from tradingd.adapters.hooks.templates import HookDefaults, symbol_index, to_signal_in
from tradingd.adapters.http.auth import KeyStore, RateLimiter
from tradingd.adapters.http.codec import daemon_of, json_response, paginate, read_body
from tradingd.adapters.http.errors import (
    NotReady,
    PayloadTooLarge,
    RateLimited,
    UndecodableBody,
    UnsupportedMediaType,
)
from tradingd.adapters.http.openapi import PAGED, Route
from tradingd.adapters.http.routes_signals import accept_signal
from tradingd.adapters.http.schemas import SignalAccepted, SignalIn
from tradingd.adapters.timestamps import iso_ms
from tradingd.engine.errors import NotFound, TradingdError, ValidationError

log = logging.getLogger("tradingd.hooks")
_hook_in = msgspec.json.Decoder(HookIn)
MEDIA_TYPES = ("application/json", "text/plain")
USAGE_SAVE_S = 5.0


@dataclass
class HookIngest:
    """What the hook routes serve from: the hooks file, a token bucket per hook, the bounds."""

    store: HookStore
    limiter: RateLimiter
    settings: HooksSettings


HOOKS: web.AppKey[HookIngest] = web.AppKey("hooks", HookIngest)


def install(app: web.Application, settings: HooksSettings, data_dir: str | Path) -> None:
    """Give `app` the hooks of `data_dir`, their usage saved every few seconds and at cleanup."""
    ingest = HookIngest(
        HookStore(hooks_path(data_dir)),
        RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        settings,
    )
    app[HOOKS] = ingest
    redact_access_log()  # the request line holds the secret

    async def save_usage(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(USAGE_SAVE_S)
                _save(ingest.store)

        task = asyncio.create_task(loop(), name="hooks-usage")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _save(ingest.store)

    app.cleanup_ctx.append(save_usage)


def _save(store: HookStore) -> None:
    try:
        store.save_usage()
    except OSError:
        log.exception("hook usage not saved")


# -- ingest ---------------------------------------------------------------------------------


def _unknown_hook() -> NotFound:
    # One answer for every hook that does not take signals: nothing tells a guess from a
    # revoked URL, and the path (the secret) is not echoed.
    return NotFound("unknown hook")


async def _read_body(request: web.Request) -> bytes:
    """The raw body: JSON or plain text (TradingView sends text/plain for a message that is not
    valid JSON), UTF-8, within `[http] max_body_bytes`."""
    charset = request.charset
    if request.content_type not in MEDIA_TYPES or (
        charset is not None and charset.lower() not in ("utf-8", "utf8")
    ):
        raise UnsupportedMediaType(
            "send the body as Content-Type: application/json or text/plain (UTF-8)",
            {"expected": list(MEDIA_TYPES)},
        )
    limit = daemon_of(request).settings.http.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"body of {request.content_length} bytes over the {limit} byte limit", {"limit": limit}
        )
    try:
        raw = await request.read()
    except (HttpProcessingError, RequestPayloadError):
        raise UndecodableBody(
            "the body could not be decoded with its Content-Encoding", {}
        ) from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"body over the {limit} byte limit", {"limit": limit})
    return raw


async def post_hook(request: web.Request) -> web.Response:
    """Submit the signal the body stands for, as the hook's key, through `accept_signal`."""
    daemon, ingest = daemon_of(request), request.app[HOOKS]
    hook = ingest.store.find(request.match_info["hook_id"])
    key = bound_key(daemon.keys, hook.key_id) if hook is not None else None
    if hook is None or key is None:
        raise _unknown_hook()
    wait = ingest.limiter.take(hook.id)
    if wait is not None:
        ingest.store.used(hook, "rate_limited")
        raise RateLimited(max(1, math.ceil(wait)), "this hook")
    try:
        body = await _parse(request, hook, ingest)
        if not (daemon.ready and daemon.runtime.accepting):  # the read may meet a shutdown
            raise NotReady("not accepting work: starting up or shutting down")
        response = await accept_signal(request, body, key.id)
    except TradingdError as exc:
        if exc.status < 500:  # the sender's to fix (a 503 is ours, and said in /health)
            ingest.store.used(hook, "bad_signature" if exc.status == 401 else "refused")
            log.info(
                "hook request refused",
                extra={"hook": hook.id, "key_id": key.id, "code": exc.code, "status": exc.status},
            )
        raise
    ingest.store.used(hook, "duplicate" if response.status == 200 else "accepted")
    log.info(
        "hook signal",
        extra={"hook": hook.id, "key_id": key.id, "client_id": body.id, "status": response.status},
    )
    return response


async def _parse(request: web.Request, hook: Hook, ingest: HookIngest) -> SignalIn:
    raw = await _read_body(request)
    if hook.hmac_secret is not None:
        verify(
            hook.hmac_secret,
            raw,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            daemon_of(request).runtime.clock(),
            ingest.settings.max_signature_age_s,
        )
    defaults = HookDefaults(source=hook.source, type=hook.type, strength=hook.strength)
    symbols = symbol_index(daemon_of(request).settings.tokens)
    return to_signal_in(hook.template, raw, defaults, symbols)


# -- admin ----------------------------------------------------------------------------------


def hook_out(hook: Hook, store: HookStore, keys: KeyStore | None) -> HookOut:
    usage = store.usage_of(hook.id)
    return HookOut(
        id=hook.id,
        name=hook.name,
        id_prefix=hook.prefix,
        key_id=hook.key_id,
        active=bound_key(keys, hook.key_id) is not None,
        source=hook.source,
        template=hook.template,
        type=hook.type,
        strength=hook.strength,
        hmac=hook.hmac_secret is not None,
        created_at=iso_ms(hook.created_at),
        last_used_at=iso_ms(usage.last_used_at) if usage.last_used_at is not None else None,
        counts=HookCounts(
            accepted=usage.accepted,
            duplicate=usage.duplicate,
            refused=usage.refused,
            bad_signature=usage.bad_signature,
            rate_limited=usage.rate_limited,
        ),
    )


async def post_hooks(request: web.Request) -> web.Response:
    daemon, ingest = daemon_of(request), request.app[HOOKS]
    body = await read_body(request, _hook_in)
    if bound_key(daemon.keys, body.key_id) is None:
        raise ValidationError("no live key with the signals scope has this id", "$.key_id")
    # the hooks file is fsynced: off the event loop, trading never waits on the disk
    hook, hook_id = await asyncio.to_thread(
        lambda: ingest.store.create(
            name=body.name,
            key_id=body.key_id,
            template=body.template,
            source=body.source,
            type=body.type,
            strength=body.strength,
            hmac=body.hmac,
            max_hooks=ingest.settings.max_hooks,
        )
    )
    out = hook_out(hook, ingest.store, daemon.keys)
    created = HookCreated(
        **msgspec.structs.asdict(out),
        hook_id=hook_id,
        path=HOOK_PATH + hook_id,
        hmac_secret=hook.hmac_secret,
    )
    return json_response(created, 201)


async def list_hooks(request: web.Request) -> web.Response:
    store, keys = request.app[HOOKS].store, daemon_of(request).keys
    page, cursor = paginate(request, store.list(), lambda h: (h.created_at, h.id))
    items = [hook_out(h, store, keys) for h in page]
    return json_response(HookPage(items=items, next_cursor=cursor))


async def delete_hook(request: web.Request) -> web.Response:
    """Revoke by the record id (`hook_...`); the URL stops answering at once."""
    store = request.app[HOOKS].store
    await asyncio.to_thread(store.revoke, request.match_info["hook_id"])
    return web.Response(status=204)


ROUTES = [
    Route(
        "POST",
        "/v1/hooks/{hook_id}",
        post_hook,
        "Submit a signal through a hook URL (no key: the hook id is the secret)",
        "hooks",
        None,
        {202: SignalAccepted, 200: SignalAccepted},
        intake=True,
        body_media=(
            ("application/json", TradingViewAlert),
            ("text/plain", str),
        ),
        errors=(401, 404, 429),
        description="`hook_id` is the secret `tdh_...` shown once by `POST /v1/hooks`. The "
        "body follows the hook's template (docs/hooks.md): `tradingview` (the alert's JSON: "
        "action, token or ticker, id, strength, type, reason), `json` (the `POST /v1/signals` "
        "body) or `text` (`buy <mint> strength=4`); `application/json` or `text/plain`. The "
        "signal is the hook key's, with the hook's fixed source; the answer is that of `POST "
        "/v1/signals` (202, or 200 for a repeated `id`). An unknown or revoked hook, or one "
        "whose key was revoked, is 404; a signed hook without a valid `X-Signature` "
        "(`sha256=<hex HMAC-SHA256 of the body>`) is 401 `bad_signature`; each hook has its "
        "own rate limit (`[hooks] rate_limit_per_s`, 429).",
    ),
    Route(
        "POST",
        "/v1/hooks",
        post_hooks,
        "Create a hook (its URL and HMAC secret are shown once)",
        "hooks",
        "admin",
        {201: HookCreated},
        body=HookIn,
        errors=(409,),
        description="`key_id` must name a live key with the `signals` scope (422 at "
        "`$.key_id`). At most `[hooks] max_hooks` hooks (409).",
    ),
    Route(
        "GET",
        "/v1/hooks",
        list_hooks,
        "List hooks (no secrets), with their use",
        "hooks",
        "admin",
        {200: HookPage},
        query=PAGED,
    ),
    Route(
        "DELETE",
        "/v1/hooks/{hook_id}",
        delete_hook,
        "Revoke a hook by its record id",
        "hooks",
        "admin",
        {204: None},
        description="`hook_id` here is the record id (`hook_...`) that `GET /v1/hooks` lists, "
        "not the secret.",
    ),
]
