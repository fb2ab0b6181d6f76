"""What an operator graphs, scraped over HTTP from an in-process daemon: per-agent money, trades
and signal outcomes, feed age per tick source, build info, and the shipped Grafana dashboard."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from http_harness import ADMIN, SOL, TOKEN, Api, serve
from prometheus_client.parser import text_string_to_metric_families
from tradingd.adapters.metrics import MAX_TICK_SOURCES

DASHBOARD = Path(__file__).resolve().parents[2] / "scripts" / "grafana-dashboard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(api: Api) -> Samples:
    status, body = await api.call("GET", "/metrics")
    assert status == 200, body
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in samples if n == name]


async def buy(api: Api, config: dict[str, Any] | None = None) -> str:
    agent_id = await api.agent(config)
    await api.prices((SOL, 150.0), (TOKEN, 1.0))
    await api.ok("POST", "/v1/signals", {"token": TOKEN, "symbol": "BONK", "strength": 4})
    await api.settle()
    return agent_id


async def test_every_metric_the_dashboard_queries_is_in_a_scrape(tmp_path: Path) -> None:
    queried = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            queried.update(re.findall(r"tradingd_[a-z0-9_]+", target["expr"]))
    assert len(queried) >= 15
    async with serve(tmp_path) as api:
        await api.daemon.open_store()  # the memory store: lag is zero
        async with api.client.ws_connect("/v1/ws", headers={"Authorization": f"Bearer {ADMIN}"}):
            await buy(api)
            await api.prices((TOKEN, 0.5))  # below the default -32% stop
            await api.settle()
            names = {name for name, _ in await scrape(api)}
    assert sorted(queried - names) == []


async def test_equity_is_the_quote_balance_plus_positions_at_the_last_price(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        agent_id = await buy(api)
        await api.prices((TOKEN, 1.25))
        (balance,) = await api.ok("GET", f"/v1/agents/{agent_id}/balances")
        (position,) = (await api.ok("GET", f"/v1/agents/{agent_id}/positions?status=open"))["items"]
        value_atomic = int(position["amount"]) * Fraction("1.25") / 150 * 10**9
        value_atomic /= 10 ** position["decimals"]
        equity = (int(balance["total"]) + int(value_atomic)) / 10**9
        samples = await scrape(api)
        assert value(samples, "tradingd_agent_equity", agent=agent_id, quote="SOL") == equity
        usd = value(samples, "tradingd_agent_equity_usd", agent=agent_id)
        assert usd is not None and abs(usd - equity * 150) < 1e-6
        assert value(samples, "tradingd_agent_open_positions", agent=agent_id) == 1
        cost = int(position["cost"]) / 10**9
        assert value(samples, "tradingd_agent_exposure", agent=agent_id, quote="SOL") == cost
        assert value(samples, "tradingd_agent_realized_pnl", agent=agent_id, quote="SOL") == 0


async def test_realized_pnl_and_trades_by_side_and_reason_follow_a_stop_loss(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        agent_id = await buy(api)
        await api.prices((TOKEN, 0.5))
        await api.settle()
        perf = await api.ok("GET", f"/v1/agents/{agent_id}/performance")
        samples = await scrape(api)
        realized = value(samples, "tradingd_agent_realized_pnl", agent=agent_id, quote="SOL")
        assert realized == int(perf["realized_pnl"]) / 10**9 < 0
        trades = "tradingd_trades_total"
        assert value(samples, trades, agent=agent_id, side="buy", reason="signal") == 1
        assert value(samples, trades, agent=agent_id, side="sell", reason="stop_loss") == 1
        assert value(samples, "tradingd_agent_open_positions", agent=agent_id) == 0


async def test_signal_outcomes_are_counted_per_agent_with_the_skip_reason(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        taker = await api.agent()
        picky = await api.agent({"signals": {"min_strength": 5}})
        await buy(api)
        samples = await scrape(api)
        name = "tradingd_signal_executions_total"
        assert value(samples, name, agent=taker, status="filled", reason="") == 1
        skipped = value(samples, name, agent=picky, status="skipped", reason="strength_below_min")
        assert skipped == 1


async def test_a_deleted_agent_leaves_no_series(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        agent_id = await api.agent({"signals": {"min_strength": 5}})
        await buy(api)

        def labelled(samples: Samples) -> list[str]:
            return [name for name, labels in samples if ("agent", agent_id) in labels]

        assert "tradingd_signal_executions_total" in labelled(await scrape(api))
        await api.ok("DELETE", f"/v1/agents/{agent_id}")
        assert labelled(await scrape(api)) == []


async def test_pushed_ticks_show_the_age_of_their_source(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        await api.prices((TOKEN, 1.0))
        tick = {"token": TOKEN, "price_usd": 1.1, "source": "feeder-1"}
        await api.ok("POST", "/v1/prices", {"ticks": [tick]})
        samples = await scrape(api)
        for source in ("push", "feeder-1"):
            age = value(samples, "tradingd_feed_age_seconds", source=source)
            assert age is not None and 0 <= age < 60


async def test_the_tick_sources_tracked_are_capped_keeping_the_latest(tmp_path: Path) -> None:
    async with serve(tmp_path) as api:
        for i in range(MAX_TICK_SOURCES + 6):
            tick = {"token": TOKEN, "price_usd": 1.0 + i / 1000, "source": f"src-{i}"}
            await api.ok("POST", "/v1/prices", {"ticks": [tick]})
        sources = {s["source"] for s in series(await scrape(api), "tradingd_feed_age_seconds")}
        assert len(sources) == MAX_TICK_SOURCES
        assert f"src-{MAX_TICK_SOURCES + 5}" in sources


async def test_build_info_names_the_version_and_no_created_series_are_exported(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path) as api:
        await buy(api)
        samples = await scrape(api)
        (build,) = series(samples, "tradingd_build_info")
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", build["version"])
        assert [name for name, _ in samples if name.endswith("_created")] == []
