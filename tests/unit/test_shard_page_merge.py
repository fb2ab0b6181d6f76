"""Agent shards: one page of `GET /v1/signals` merged from every shard's page after the same
cursor (adapters/http/routes_signals.py merge_signal_pages)."""

from __future__ import annotations

from typing import Any

from tradingd.adapters.http.codec import key_cursor
from tradingd.adapters.http.routes_signals import merge_signal_pages
from tradingd.adapters.timestamps import iso_ms


def signal(n: int, agent: str) -> dict[str, Any]:
    """Signal n (newer for larger n) as one shard shows it, with its agent's execution."""
    return {
        "signal_id": f"sig_{n:03d}",
        "received_at": iso_ms(1_700_000_000_000 + n),
        "agents_matched": 1,
        "executions": [{"agent_id": agent, "status": "filled"}],
    }


def page(ns: list[int], agent: str, more: bool) -> dict[str, Any]:
    return {"items": [signal(n, agent) for n in ns], "next_cursor": "c" if more else None}


def test_each_signal_holds_every_shards_executions() -> None:
    merged = merge_signal_pages(None, page([3, 2, 1], "a0", False), [page([3, 2, 1], "a1", False)])  # type: ignore[arg-type]
    assert [s["signal_id"] for s in merged["items"]] == ["sig_003", "sig_002", "sig_001"]
    assert all(s["agents_matched"] == 2 for s in merged["items"])
    assert all([e["agent_id"] for e in s["executions"]] == ["a0", "a1"] for s in merged["items"])
    assert merged["next_cursor"] is None


def test_a_page_stops_where_a_shard_ahead_of_this_one_ends_its_page() -> None:
    # shard 1 already applied signal 4, which this shard has not: its full page ends at 2
    own = page([3, 2, 1], "a0", True)
    ahead = page([4, 3, 2], "a1", True)
    merged = merge_signal_pages(None, own, [ahead])  # type: ignore[arg-type]
    assert [s["signal_id"] for s in merged["items"]] == ["sig_003", "sig_002"]
    assert all(s["agents_matched"] == 2 for s in merged["items"])
    last = merged["items"][-1]
    assert merged["next_cursor"] == key_cursor((-(1_700_000_000_000 + 2), last["signal_id"]))


def test_a_signal_a_shard_has_not_applied_shows_the_executions_of_those_that_have() -> None:
    merged = merge_signal_pages(None, page([5, 4], "a0", False), [page([4], "a1", False)])  # type: ignore[arg-type]
    assert [s["agents_matched"] for s in merged["items"]] == [1, 2]
