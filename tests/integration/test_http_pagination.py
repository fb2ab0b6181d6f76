"""Lists page with `limit` and an opaque `cursor`, and every item shows up exactly once."""

from __future__ import annotations

import pytest
from http_harness import SOL, TOKEN, Api, serve


async def walk(api: Api, path: str, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    for _ in range(50):
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        doc = await api.ok("GET", url)
        # a signal's id is `signal_id` (its `id` is the client's); every other item's is `id`
        pages.append(
            [item["signal_id"] if "strength" in item else item["id"] for item in doc["items"]]
        )
        cursor = doc["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("pagination did not end")


async def test_agents_page_in_creation_order(tmp_path):
    async with serve(tmp_path) as api:
        ids = [(await api.ok("POST", "/v1/agents", {"name": f"a{i}"}))["id"] for i in range(7)]
        pages = await walk(api, "/v1/agents", 3)
        assert [len(p) for p in pages] == [3, 3, 1]
        assert sum(pages, []) == ids


async def test_default_page_is_100_and_an_exact_fit_ends_with_null_cursor(tmp_path):
    async with serve(tmp_path) as api:
        for i in range(4):
            await api.ok("POST", "/v1/agents", {"name": f"a{i}"})
        doc = await api.ok("GET", "/v1/agents")
        assert len(doc["items"]) == 4 and doc["next_cursor"] is None
        assert [len(p) for p in await walk(api, "/v1/agents", 2)] == [2, 2]


async def test_signals_page_newest_first_and_new_arrivals_do_not_shift_a_walk(tmp_path):
    async with serve(tmp_path) as api:
        sent = [
            (await api.ok("POST", "/v1/signals", {"token": TOKEN}))["signal_id"] for _ in range(5)
        ]
        first = await api.ok("GET", "/v1/signals?limit=2")
        assert [s["signal_id"] for s in first["items"]] == sent[:-3:-1]
        await api.ok("POST", "/v1/signals", {"token": TOKEN})  # arrives mid-walk
        rest = await api.ok("GET", f"/v1/signals?limit=10&cursor={first['next_cursor']}")
        assert [s["signal_id"] for s in rest["items"]] == sent[2::-1]


async def test_trades_page_oldest_first(tmp_path):
    async with serve(tmp_path) as api:
        agent_id = await api.agent({"limits": {"max_positions_per_token": 10}})
        await api.prices((SOL, 150.0), (TOKEN, 1.0))
        for _ in range(3):
            await api.ok("POST", "/v1/signals", {"token": TOKEN})
            await api.settle()
        pages = await walk(api, f"/v1/agents/{agent_id}/trades", 2)
        assert [len(p) for p in pages] == [2, 1]
        all_trades = (await api.ok("GET", f"/v1/agents/{agent_id}/trades"))["items"]
        assert sum(pages, []) == [t["id"] for t in all_trades]


async def test_a_deleted_item_under_the_cursor_does_not_break_the_walk(tmp_path):
    async with serve(tmp_path) as api:
        ids = [(await api.ok("POST", "/v1/agents", {"name": f"a{i}"}))["id"] for i in range(5)]
        doc = await api.ok("GET", "/v1/agents?limit=2")
        await api.ok("DELETE", f"/v1/agents/{ids[1]}")  # the cursor's item
        rest = await api.ok("GET", f"/v1/agents?limit=10&cursor={doc['next_cursor']}")
        assert [a["id"] for a in rest["items"]] == ids[2:]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=%C2%B2",  # "²": str.isdigit() takes it, int() does not (a 500 before)
        "limit=%D9%A3",  # an Arabic-Indic 3
        "limit=" + "9" * 5000,
        "cursor=%%%",
        "cursor=bm90LWpzb24",
        "status=pending",
    ],
)
async def test_bad_list_parameters_are_422(tmp_path, query):
    async with serve(tmp_path) as api:
        agent_id = await api.agent()
        status, doc = await api.call("GET", f"/v1/agents/{agent_id}/positions?{query}")
        assert status == 422, doc
        assert doc["error"]["details"]["path"] == "query." + query.split("=")[0]
