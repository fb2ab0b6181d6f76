"""`/v1/signals`: intake of trading signals (idempotent by the client's `id`) and their record
with per-agent executions."""

from __future__ import annotations

import itertools
import logging
import secrets
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from msgspec import UNSET
from tradingd.adapters.http.codec import (
    API_KEY,
    daemon_of,
    json_response,
    key_cursor,
    page_limit,
    paginate,
    read_body,
)
from tradingd.adapters.http.errors import NotReady
from tradingd.adapters.http.instruments import check_instrument
from tradingd.adapters.http.openapi import PAGED, Route
from tradingd.adapters.http.schemas import (
    SignalAccepted,
    SignalIn,
    SignalOut,
    SignalPage,
)
from tradingd.adapters.http.shapes import signal_out
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.timestamps import iso_ms, ms_of_iso
from tradingd.adapters.venues.ccxt.markets import MarketRegistry
from tradingd.engine.core import SignalRecord
from tradingd.engine.errors import NotFound, ValidationError
from tradingd.engine.model import EntryCondition, Signal
from tradingd.engine.scorecards import is_reserved

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.http")
_signal_in = msgspec.json.Decoder(SignalIn)


_PROCESS_TAG = secrets.token_hex(3)  # several daemons (shards) never mint the same id
_counter = itertools.count(1)
DEFAULT_EXPIRES_IN_MS = 30_000


def new_signal_id(now_ms: int) -> str:
    # time first for humans; a per-process tag and counter instead of fresh randomness per
    # signal (os.urandom was a measurable syscall on the signal path)
    return f"sig_{now_ms:x}{_PROCESS_TAG}{next(_counter):x}"


def to_signal(
    body: SignalIn, now_ms: int, key_id: str | None = None, markets: MarketRegistry | None = None
) -> Signal:
    """The engine's signal from a request body received at `now_ms`, posted by API key
    `key_id` (who may cancel what it leaves resting). `body.token` is an instrument id (a mint
    or `<exchange>:<BASE>/<QUOTE>`), carried unchanged; a market id must name a market loaded in
    `markets` (the daemon's MarketRegistry; None: none is configured). Raises ValidationError
    naming `$.token` for either, and for the rules between fields: `expires_at` only, and always,
    with an `entry`; `expires_in_ms` never with one. The engine checks the rest of a resting buy
    (a buy, a price, the expiry's bounds)."""
    check_instrument(body.token, "$.token", markets)
    return Signal(
        id=new_signal_id(now_ms),
        token=body.token,
        side=body.side,
        symbol=body.symbol,
        type=body.type,
        strength=body.strength,
        source=body.source,
        reason=body.reason,
        received_at=now_ms,
        expires_at=_expires_at(body, now_ms),
        decimals=body.decimals,
        client_id=body.id,
        entry=EntryCondition(type=body.entry.type, price_usd=body.entry.price_usd)
        if body.entry is not None
        else None,
        key_id=key_id,
    )


def _expires_at(body: SignalIn, now_ms: int) -> int:
    if body.entry is None:
        if body.expires_at is not UNSET:
            raise ValidationError(
                "expires_at is for a resting buy: send it with entry", "$.expires_at"
            )
        ttl = body.expires_in_ms if body.expires_in_ms is not UNSET else DEFAULT_EXPIRES_IN_MS
        return now_ms + ttl
    if body.expires_in_ms is not UNSET:
        raise ValidationError(
            "a resting buy expires at expires_at: expires_in_ms is not taken with entry",
            "$.expires_in_ms",
        )
    if body.expires_at is UNSET:
        raise ValidationError("a signal with an entry needs expires_at (epoch ms)", "$.expires_at")
    return body.expires_at


async def _known_beyond_window(daemon: Daemon, client_id: str | None) -> SignalRecord | None:
    """The first signal of `client_id` if it left the dedupe window (engine memory) and
    Postgres, the system of record, holds it. Asks Postgres only when it may hold ids the
    memory does not (something was evicted, or recovery restored only the window)."""
    engine = daemon.engine
    history = daemon.store.history if daemon.store is not None else None
    if (
        client_id is None
        or history is None
        or client_id in engine.signal_by_client
        or not (engine.signal_window.forgotten or history.signals_before_window)
    ):
        return None
    if daemon.components.get("postgres", {}).get("status") == "down":
        return _unverified(client_id)
    try:
        record: SignalRecord | None = await history.signal_by_client_id(client_id)
    except StoreUnavailable:
        return _unverified(client_id)
    if not (daemon.ready and daemon.runtime.accepting):  # the await may have met a shutdown
        raise NotReady("not accepting work: starting up or shutting down")
    return record


def _unverified(client_id: str) -> None:
    """Postgres cannot say whether an id older than the dedupe window was seen: the signal is
    taken as new rather than stopping intake while Postgres is away (a provider's retries fall
    within the window, which memory answers alone)."""
    log.warning(
        "signal id not checked beyond the dedupe window: postgres unavailable",
        extra={"client_id": client_id},
    )
    return None


async def post_signal(request: web.Request) -> web.Response:
    body = await read_body(request, _signal_in)
    return await accept_signal(request, body, request[API_KEY].id)


async def accept_signal(request: web.Request, body: SignalIn, key_id: str) -> web.Response:
    """Build the signal of `body` posted by key `key_id` and submit it: 202 with its id, or 200
    with the first one's for a repeated client `id`. The one way in for `POST /v1/signals` and
    the header-less hooks (routes_hooks.py), so both answer and deduplicate alike."""
    if is_reserved(body.source):
        raise ValidationError(
            f"source {body.source!r} is reserved: the scorecards' card shared by sources "
            "(engine/scorecards.py)",
            "$.source",
        )
    daemon = daemon_of(request)
    old = await _known_beyond_window(daemon, body.id)
    if old is not None:
        log.info(
            "duplicate signal beyond the dedupe window",
            extra={"signal_id": old.signal.id, "client_id": body.id},
        )
        return json_response(
            SignalAccepted(
                signal_id=old.signal.id,
                received_at=iso_ms(old.signal.received_at),
                duplicate=True,
                agents_matched=old.agents_matched,
            ),
            200,
        )
    signal = to_signal(body, daemon.runtime.clock(), key_id, daemon.markets)
    first_price = daemon.first_price
    if signal.side == "buy" and first_price.wanted(signal.token, body.id):
        await first_price.fetch(signal.token)
        if not (daemon.ready and daemon.runtime.accepting):  # the wait may have met a shutdown
            raise NotReady("not accepting work: starting up or shutting down")
    if daemon.shard_intake is not None:
        return await _accept_sharded(daemon, signal)
    record, duplicate = daemon.runtime.submit_signal(signal)
    first = record.signal
    if duplicate:
        log.info("duplicate signal", extra={"signal_id": first.id, "client_id": body.id})
    out = SignalAccepted(
        signal_id=first.id,
        received_at=iso_ms(first.received_at),
        duplicate=duplicate,
        agents_matched=record.agents_matched,
    )
    return json_response(out, 200 if duplicate else 202)


async def _accept_sharded(daemon: Daemon, signal: Signal) -> web.Response:
    """Agent shards (adapters/cluster/intake.py): append the signal to the intake stream every
    shard applies for its own agents, then answer with the sum of their agents matched once
    every shard reported (or at `[cluster] intake_timeout_ms`, naming the shards still pending).
    A client id seen anywhere in the cluster within the dedupe window is 200 duplicate."""
    intake = daemon.shard_intake
    assert intake is not None
    published = await intake.publish_signal(signal)
    results = await intake.results(published.signal_id, wait=not published.duplicate)
    if published.duplicate:
        log.info(
            "duplicate signal",
            extra={"signal_id": published.signal_id, "client_id": signal.client_id},
        )
    elif results.errors and len(results.errors) == len(results.answered) and not results.pending:
        await intake.forget_client(signal)  # refused everywhere: the id may be sent again
        raise ValidationError(results.errors[0][1], results.errors[0][0])
    out = SignalAccepted(
        signal_id=published.signal_id,
        received_at=iso_ms(published.received_at),
        duplicate=published.duplicate,
        agents_matched=results.agents_matched,
    )
    if results.pending and not published.duplicate:
        out.shards_pending = results.pending
    return json_response(out, 200 if published.duplicate else 202)


async def get_signal(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    signal_id = request.match_info["signal_id"]
    record = daemon.engine.signals.get(signal_id)
    history = daemon.store.history if daemon.store is not None else None
    if record is None and history is not None:
        record = await history.signal(signal_id)
    if record is None:
        raise NotFound(f"unknown signal {signal_id!r}", {"signal_id": signal_id})
    return json_response(signal_out(record))


def merge_signal(
    _request: web.Request, own: dict[str, Any], others: list[dict[str, Any]]
) -> dict[str, Any]:
    """Agent shards: one signal as every shard recorded it — each holds its own agents'
    executions and count — as one record."""
    answers = (own, *others)
    executions = sorted(
        (e for answer in answers for e in answer["executions"]), key=lambda e: e["agent_id"]
    )
    matched = sum(answer["agents_matched"] for answer in answers)
    return {**own, "agents_matched": matched, "executions": executions}


def _listed(signal: dict[str, Any]) -> tuple[int, str]:
    """The list's sort key of a signal as the API shows it: newest first, then by id."""
    return -ms_of_iso(signal["received_at"]), signal["signal_id"]


def merge_signal_pages(
    request: web.Request, own: dict[str, Any], others: list[dict[str, Any]]
) -> dict[str, Any]:
    """Agent shards: every shard applies every signal and records its own agents' executions;
    each shard's page after the same cursor is merged into one (merge_signal per signal, a
    signal some shard has not applied yet shown from those that have). The page stops where the
    first full page of any shard ends, so every signal shown was on the page of every shard that
    holds it; its cursor (a key, no position) resumes after the last one shown on every
    shard, whether or not that shard has applied it."""
    pages = (own, *others)
    records: dict[str, list[dict[str, Any]]] = {}
    for page in pages:
        for signal in page["items"]:
            records.setdefault(signal["signal_id"], []).append(signal)
    ends = [_listed(page["items"][-1]) for page in pages if page["next_cursor"] and page["items"]]
    end = min(ends, default=None)
    ordered = sorted(records.values(), key=lambda found: _listed(found[0]))
    inside = [found for found in ordered if end is None or _listed(found[0]) <= end]
    limit = page_limit(request)
    shown = [merge_signal(request, found[0], found[1:]) for found in inside[:limit]]
    more = end is not None or len(inside) > limit
    return {
        "items": shown,
        "next_cursor": key_cursor(_listed(shown[-1])) if shown and more else None,
    }


async def list_signals(request: web.Request) -> web.Response:
    """Newest first: a signal arriving mid-walk lands before the walk, never inside it. Lists
    the dedupe window (engine memory); only the oldest ever leave it, and with them everything
    after the cursor. An older signal is still served by id, from Postgres."""
    records = list(reversed(daemon_of(request).engine.signals.values()))
    page, cursor = paginate(
        request, records, lambda r: (-r.signal.received_at, r.signal.id), grows_at_front=True
    )
    return json_response(SignalPage(items=[signal_out(r) for r in page], next_cursor=cursor))


ROUTES = [
    Route(
        "POST",
        "/v1/signals",
        post_signal,
        "Submit a trading signal",
        "signals",
        "signals",
        {202: SignalAccepted, 200: SignalAccepted},
        body=SignalIn,
        intake=True,
        description="`token` is an instrument id: a mint, or an exchange market "
        "`<exchange>:<BASE>/<QUOTE>` (e.g. `binance:BTC/USDT`) whose exchange is configured "
        "and lists it (422 at `$.token` otherwise). Each agent's execution says what it did: "
        "besides the filters and limits, an agent whose venue cannot trade the instrument skips "
        "`venue_cannot_trade`, an exchange agent and a market in another quote `quote_mismatch`, "
        "and a buy below the market's least amount or notional `below_venue_minimum`. "
        "A repeat of the same client `id` is 200 with the first response's "
        "`signal_id` and `duplicate: true`; nothing is traded again. The engine keeps the "
        "dedupe window in memory (`[engine] dedupe_window_s`, default 24 h, and at most "
        "`dedupe_max_ids` ids, default 100 000; oldest evicted first); an id older than the "
        "window is looked up in Postgres, the system of record, and answered the same way if "
        "found. If Postgres is down or does not answer within `[store] "
        "history_read_timeout_s`, such an id is taken as new (intake never waits on Postgres; "
        "a provider's retries fall within the window). An id unknown to both is a new signal. With "
        "`TRADINGD_STORE=memory` there is no system of record: an id that left the window is new "
        "again. While buys are halted or an agent is paused the signal is accepted and its "
        "executions say why they skipped. A buy with an `entry` (`limit`: at or below "
        "`price_usd`, `stop`: at or above it) rests until its price comes or `expires_at` "
        "(required with `entry`, at most `[engine] max_resting_s` after receipt; "
        "`expires_in_ms` is refused with it): each agent's quote for it is reserved at once and "
        "its execution is `resting`; `DELETE /v1/signals/{signal_id}` cancels it.",
    ),
    Route(
        "GET",
        "/v1/signals",
        list_signals,
        "List signals, newest first",
        "signals",
        "read",
        {200: SignalPage},
        query=PAGED,
        errors=(503,),
        cluster_wide=True,
        merge_shards=merge_signal_pages,
        description="The signals of the dedupe window (engine memory, see POST /v1/signals); "
        "an older one is served by `GET /v1/signals/{signal_id}`. With agent shards, each "
        "signal holds every shard's executions and `agents_matched` summed (503 "
        "`shards_incomplete` when a shard does not answer).",
    ),
    Route(
        "GET",
        "/v1/signals/{signal_id}",
        get_signal,
        "A signal with its executions",
        "signals",
        "read",
        {200: SignalOut},
        errors=(503,),
        cluster_wide=True,
        merge_shards=merge_signal,
        description="A signal that left the dedupe window is read from Postgres, same shape "
        "(503 `store_unavailable` if Postgres does not answer). With agent shards, every "
        "shard's executions and `agents_matched` summed (503 `shards_incomplete` when a shard "
        "does not answer or has not applied it yet).",
    ),
]
