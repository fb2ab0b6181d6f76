"""Resting buys on the control port: cancelling what a signal left resting (`DELETE
/v1/signals/{signal_id}`, the key that posted it or admin) and an agent's resting entries."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from tradingd.adapters.http.codec import API_KEY, daemon_of, json_response, paginate
from tradingd.adapters.http.errors import NotReady
from tradingd.adapters.http.openapi import PAGED, Route
from tradingd.adapters.http.schemas import RestingEntryPage, SignalCancelled
from tradingd.adapters.http.shapes import resting_entry_out
from tradingd.engine.errors import NotFound
from tradingd.engine.model import RestingEntry

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.http")


class _Unknown:
    """No record of the signal anywhere: not the same as a signal posted without a key."""


UNKNOWN = _Unknown()


async def _poster(daemon: Daemon, signal_id: str) -> str | None | _Unknown:
    """The id of the API key that posted `signal_id` (None: posted without one, e.g. replayed
    or from before keys were recorded), from the signal in memory, else from what it left
    resting, else from Postgres; UNKNOWN when none of them knows the signal."""
    engine = daemon.engine
    record = engine.signals.get(signal_id)
    if record is not None:
        return record.signal.key_id
    for entry_id in engine.entries_by_signal.get(signal_id, ()):
        return engine.entries[entry_id].key_id
    history = daemon.store.history if daemon.store is not None else None
    if history is None:
        return UNKNOWN
    record = await history.signal(signal_id)
    if not (daemon.ready and daemon.runtime.accepting):  # the await may have met a shutdown
        raise NotReady("not accepting work: starting up or shutting down")
    return record.signal.key_id if record is not None else UNKNOWN


async def cancel_signal(request: web.Request) -> web.Response:
    daemon = daemon_of(request)
    signal_id = request.match_info["signal_id"]
    key = request[API_KEY]
    poster = await _poster(daemon, signal_id)
    # Another key's signal is answered as an unknown one: a key learns nothing of the
    # signals it did not post.
    if poster is UNKNOWN or (poster != key.id and not key.allows("admin")):
        raise NotFound(f"unknown signal {signal_id!r}", {"signal_id": signal_id})
    cancelled = daemon.runtime.cancel_resting(signal_id)  # the recorder sees it too
    log.info(
        "resting entries cancelled",
        extra={"signal_id": signal_id, "key_id": key.id, "cancelled": len(cancelled)},
    )
    engine = daemon.engine
    return json_response(
        SignalCancelled(
            signal_id=signal_id,
            cancelled=len(cancelled),
            entries=[resting_entry_out(e, engine) for e in cancelled],
        )
    )


def merge_cancels(
    _request: web.Request, own: dict[str, Any], others: list[dict[str, Any]]
) -> dict[str, Any]:
    """Agent shards: one signal's cancel on every shard, as one answer (each shard ends its own
    agents' entries)."""
    return {
        **own,
        "cancelled": own["cancelled"] + sum(o["cancelled"] for o in others),
        "entries": [e for answer in (own, *others) for e in answer["entries"]],
    }


def _arrival(entry: RestingEntry) -> tuple[int, str]:
    return entry.seq, entry.id


async def list_entries(request: web.Request) -> web.Response:
    """Oldest first (arrival order): the agent's buys resting now."""
    engine = daemon_of(request).engine
    agent_id = request.match_info["agent_id"]
    engine.agent(agent_id)  # 404 for an unknown agent
    entries = sorted(engine.books[agent_id].entries.values(), key=_arrival)
    page, cursor = paginate(request, entries, _arrival)
    return json_response(
        RestingEntryPage(items=[resting_entry_out(e, engine) for e in page], next_cursor=cursor)
    )


ROUTES = [
    Route(
        "DELETE",
        "/v1/signals/{signal_id}",
        cancel_signal,
        "Cancel the buys a signal left resting",
        "signals",
        "signals",
        {200: SignalCancelled},
        intake=True,
        cluster_wide=True,
        merge_shards=merge_cancels,
        description="Every entry of the signal still resting ends (outcome `cancelled`, its "
        "execution `skipped` with reason `cancelled`) and its reserved quote is released. "
        "`cancelled` is 0 when nothing rests any more (triggered, expired, cancelled before). "
        "A key without `admin` may cancel only the signals it posted: any other signal is 404, "
        "as an unknown one. A signal that left the dedupe window is looked up in Postgres "
        "(503 `store_unavailable` if it does not answer). With agent shards, every shard "
        "cancels its agents' entries and the answer sums them (503 `shards_incomplete` names "
        "the shards that did not confirm it; sending it again is safe).",
    ),
    Route(
        "GET",
        "/v1/agents/{agent_id}/entries",
        list_entries,
        "An agent's resting buys, oldest first",
        "agents",
        "read",
        {200: RestingEntryPage},
        query=PAGED,
    ),
]
