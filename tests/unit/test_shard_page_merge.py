"""Agent shards: one page of `GET /v1/signals` merged from every shard's page after the same
cursor (adapters/http/routes_signals.py merge_signal_pages), and a shard's page after a cursor
another shard made (adapters/http/codec.py paginate)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters.http.codec import key_cursor, paginate
from tradingd.adapters.http.routes_signals import merge_signal_pages
from tradingd.adapters.timestamps import iso_ms

T0 = 1_700_000_000_000


def request(limit: int, cursor: str | None = None) -> Any:
    query = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
    return SimpleNamespace(query=query)


def shown(n: int, agent: str) -> dict[str, Any]:
    """Signal n (newer for larger n) as one shard shows it, with its agent's execution."""
    return {
        "signal_id": f"sig_{n:03d}",
        "received_at": iso_ms(T0 + n),
        "agents_matched": 1,
        "executions": [{"agent_id": agent, "status": "filled"}],
    }


def key(n: int) -> tuple[int, str]:
    return -(T0 + n), f"sig_{n:03d}"


def shard_page(applied: list[int], agent: str, req: Any) -> dict[str, Any]:
    """What one shard answers: its own list (newest first) paged by the real paginate."""
    items = sorted(applied, reverse=True)
    page, cursor = paginate(req, items, key, grows_at_front=True)
    return {"items": [shown(n, agent) for n in page], "next_cursor": cursor}


def walk(applied: list[list[int]], limit: int, receiver: int) -> list[dict[str, Any]]:
    """Every page of the merged list as shard `receiver` answers it, until the end."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):  # bounded: at most 200 pages
        req = request(limit, cursor)
        pages = [shard_page(a, f"a{i}", req) for i, a in enumerate(applied)]
        merged = merge_signal_pages(req, pages[receiver], pages[:receiver] + pages[receiver + 1 :])
        assert len(merged["items"]) <= limit
        out += merged["items"]
        cursor = merged["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("no end")


def test_each_signal_holds_every_shards_executions() -> None:
    merged = walk([[1, 2, 3], [1, 2, 3]], 10, 0)
    assert [s["signal_id"] for s in merged] == ["sig_003", "sig_002", "sig_001"]
    assert all(s["agents_matched"] == 2 for s in merged)


def test_a_shard_behind_by_two_signals_keeps_its_executions_on_every_later_page() -> None:
    """A tester's case: shard 2 had not applied the two newest signals; pages after the
    first lost its executions of every older signal (its page after the cursor was empty)."""
    everything = list(range(1, 15))
    merged = walk([everything, everything, everything[:-2]], 5, 0)
    assert [s["signal_id"] for s in merged] == [f"sig_{n:03d}" for n in range(14, 0, -1)]
    assert [s["agents_matched"] for s in merged] == [2, 2] + [3] * 12


def test_the_shard_behind_answers_the_newest_signals_from_the_others() -> None:
    everything = list(range(1, 15))
    merged = walk([everything, everything, everything[:-2]], 1, 2)
    assert [s["agents_matched"] for s in merged] == [2, 2] + [3] * 12


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    behind=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    limit=st.integers(1, 7),
    data=st.data(),
)
def test_every_signal_once_with_every_executions_of_the_shards_that_applied_it(
    n: int, behind: list[int], limit: int, data: st.DataObject
) -> None:
    applied = [list(range(1, n + 1 - min(b, n - 1))) for b in behind]
    receiver = data.draw(st.integers(0, len(applied) - 1))
    merged = walk(applied, limit, receiver)
    known = sorted(set().union(*applied), reverse=True)  # applied by at least one shard
    assert [s["signal_id"] for s in merged] == [f"sig_{k:03d}" for k in known]
    for s in merged:
        k = int(s["signal_id"][4:])
        holders = [i for i, a in enumerate(applied) if k in a]
        assert sorted(e["agent_id"] for e in s["executions"]) == [f"a{i}" for i in holders]
        assert s["agents_matched"] == len(holders)


def test_a_cursor_from_another_shard_resumes_after_its_key_here() -> None:
    req = request(3, key_cursor(key(9)))
    page, _ = paginate(req, list(range(8, 0, -1)), key, grows_at_front=True)
    assert list(page) == [8, 7, 6]  # signal 9 not applied here: resume after its key
