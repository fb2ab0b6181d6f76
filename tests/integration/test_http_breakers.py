"""Account breakers on the control port: a trip shows in `/health` and `GET /v1/breakers`,
halts buys, is reset by an admin only (`POST /v1/breakers/reset`, or lifting the halt), and a
bad `[breakers]` config is refused naming its key."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from http_harness import TOKEN, TOKEN2, Api, serve
from tradingd.adapters.app.settings import BreakersSettings, Settings, load_settings
from tradingd.engine.errors import ValidationError

DEPOSIT = "1000000000"  # 1,000 USDC
CONFIG = {
    "sizing": {"mode": "fixed", "amount": "100000000"},
    "stop_loss": {"mode": "fixed", "default_pct": -10},
    "execution": {"slippage_bps": 0, "fee_bps": 0},
}


def serve_with(data_dir: Path, **rules: Any) -> AbstractAsyncContextManager[Api]:
    """The harness's in-process daemon (memory store, paper venue, no feeds) with `[breakers]`
    `rules`."""

    def configure(settings: Settings) -> None:
        settings.breakers = BreakersSettings(**rules)

    return serve(data_dir, configure=configure)


async def usdc_agent(api: Api) -> str:
    doc = await api.ok("POST", "/v1/agents", {"name": "a", "quote": "USDC", "config": CONFIG})
    await api.ok("POST", f"/v1/agents/{doc['id']}/deposits", {"asset": "USDC", "amount": DEPOSIT})
    return str(doc["id"])


async def stop_outs(api: Api, n: int) -> None:
    """`n` positions in a row bought at 1.0 and stopped out at 0.85 (-15 % through -10 %), the
    first time with a new agent."""
    if not api.daemon.engine.agents:
        await usdc_agent(api)
    for _ in range(n):
        await api.prices((TOKEN, 1.0))
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "buy", "strength": 3})
        await api.settle()
        await api.prices((TOKEN, 0.85))
        await api.settle()


async def test_a_trip_shows_in_health_and_breakers_and_halts_buys(tmp_path):
    async with serve_with(tmp_path, consecutive_stop_outs=2) as api:
        await stop_outs(api, 1)
        health = await api.ok("GET", "/health")
        assert health["halted"] is False and health["breakers"]["tripped"] is None
        assert health["breakers"]["rules"]["consecutive_stop_outs"] == 2
        await stop_outs(api, 1)
        health = await api.ok("GET", "/health")
        assert health["halted"] is True
        tripped = health["breakers"]["tripped"]
        assert tripped["rule"] == "consecutive_stop_outs"
        assert tripped["details"] == {"rule": "consecutive_stop_outs", "streak": 2, "threshold": 2}
        assert tripped["at"].endswith("Z")
        read = await api.key("read")
        doc = await api.ok("GET", "/v1/breakers", key=read)
        assert doc["tripped"]["rule"] == "consecutive_stop_outs" and doc["halted"] is True
        assert doc["values"]["stop_out_streak"] == 2
        assert doc["rules"]["consecutive_stop_outs"] == 2 and doc["rules"]["flatten"] is False
        await api.prices((TOKEN2, 1.0))
        sig = await api.ok("POST", "/v1/signals", {"token": TOKEN2, "side": "buy", "strength": 3})
        record = await api.ok("GET", f"/v1/signals/{sig['signal_id']}")
        assert [(x["status"], x["reason"]) for x in record["executions"]] == [("skipped", "halted")]


async def test_only_an_admin_resets_and_the_reset_lifts_the_halt(tmp_path):
    async with serve_with(tmp_path, consecutive_stop_outs=1) as api:
        await stop_outs(api, 1)
        for scope in ("read", "trade"):
            status, doc = await api.call("POST", "/v1/breakers/reset", key=await api.key(scope))
            assert status == 403, doc
        assert (await api.ok("GET", "/v1/breakers"))["tripped"] is not None
        doc = await api.ok("POST", "/v1/breakers/reset")
        assert doc["cleared"] == "consecutive_stop_outs"
        assert doc["breakers"]["tripped"] is None and doc["breakers"]["halted"] is False
        assert doc["breakers"]["values"]["stop_out_streak"] == 0
        health = await api.ok("GET", "/health")
        assert health["halted"] is False and health["breakers"]["tripped"] is None
        again = await api.ok("POST", "/v1/breakers/reset")
        assert again["cleared"] is None


async def test_lifting_the_halt_clears_a_breaker_trip(tmp_path):
    async with serve_with(tmp_path, consecutive_stop_outs=1) as api:
        await stop_outs(api, 1)
        doc = await api.ok("DELETE", "/v1/halt")
        assert doc["halted"] is False
        assert (await api.ok("GET", "/v1/breakers"))["tripped"] is None


async def test_a_trip_and_its_reset_are_alerts_on_the_event_stream(tmp_path):
    async with serve_with(tmp_path, consecutive_stop_outs=1) as api:
        seen: list[Any] = []
        api.daemon.runtime.event_subscribers.append(lambda events: seen.extend(events))
        await stop_outs(api, 1)
        await api.ok("POST", "/v1/breakers/reset")
        codes = [getattr(e, "code", None) for e in seen]
        assert codes.count("breaker_tripped") == 1 and codes.count("breaker_reset") == 1
        halts = [e for e in seen if type(e).__name__ == "HaltChanged"]
        assert [(h.buys, h.rule) for h in halts] == [(True, "consecutive_stop_outs"), (False, None)]


async def test_breakers_off_by_default(tmp_path):
    async with serve_with(tmp_path) as api:
        doc = await api.ok("GET", "/v1/breakers")
        assert doc["tripped"] is None and doc["halted"] is False
        assert doc["rules"]["equity_drawdown_pct"] is None
        assert doc["values"]["equity_usd"] is None  # the drawdown rule is off


async def test_drawdown_values_are_exact_decimal_text(tmp_path):
    async with serve_with(tmp_path, equity_drawdown_pct=50) as api:
        await usdc_agent(api)
        await api.prices((TOKEN, 1.0))
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "buy", "strength": 3})
        await api.settle()  # peak 1,000 at the fill
        await api.prices((TOKEN, 0.95))
        values = (await api.ok("GET", "/v1/breakers"))["values"]
        assert values["equity_usd"] == "995.000000" and values["peak_usd"] == "1000.000000"
        assert values["drawdown_pct"] == 0.5


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("equity_drawdown_pct = 0", "breakers.equity_drawdown_pct"),
        ("equity_drawdown_pct = 100", "breakers.equity_drawdown_pct"),
        ("consecutive_stop_outs = 0", "breakers.consecutive_stop_outs"),
        ("stale_feeds_s = 1.5", "breakers.stale_feeds_s"),
        ("order_failure_rate = 101", "breakers.order_failure_rate"),
        ("order_failure_window = 5\nmin_orders = 6", "breakers.min_orders"),
        ("flatten = 'yes'", "breakers.flatten"),
        ("stale_feed_s = 5", "stale_feed_s"),
    ],
)
def test_a_bad_breakers_config_is_refused_naming_the_key(tmp_path, toml, key):
    path = tmp_path / "t.toml"
    path.write_text(f"[breakers]\n{toml}\n")
    with pytest.raises(ValidationError) as err:
        load_settings(str(path), {})
    assert key in err.value.message


def test_breakers_config_reaches_the_engine_options():
    from tradingd.adapters.app.settings import Settings, engine_options

    settings = Settings(breakers=BreakersSettings(stale_feeds_s=30, flatten=True))
    rules = engine_options(settings)["breakers"]
    assert rules is not None and rules.stale_feeds_s == 30 and rules.flatten


async def test_stale_feeds_trip_on_a_clock_turn_from_the_price_books_tick_time(tmp_path):
    async with serve_with(tmp_path, stale_feeds_s=30) as api:
        await usdc_agent(api)
        now = api.daemon.engine.clock()
        # the tick's own time is 29 s ago: fresh enough to buy on (max price age 60 s)
        await api.ok(
            "POST",
            "/v1/prices",
            {"ticks": [{"token": TOKEN, "price_usd": 1.0, "ts": now - 29_000}]},
        )
        await api.ok("POST", "/v1/signals", {"token": TOKEN, "side": "buy", "strength": 3})
        await api.settle()
        api.daemon.runtime.clock_turn()  # 29 s and some ms: not yet, unless the machine stalled
        doc = await api.ok("GET", "/v1/breakers")
        age = doc["values"]["oldest_feed"]["age_s"]
        assert doc["values"]["oldest_feed"]["token"] == TOKEN and age >= 29
        if age <= 30:
            assert doc["tripped"] is None
        await api.ok(
            "POST", "/v1/prices", {"ticks": [{"token": TOKEN2, "price_usd": 1.0}]}
        )  # another token's tick does not refresh TOKEN
        await api.ok(
            "POST",
            "/v1/prices",
            {"ticks": [{"token": TOKEN, "price_usd": 1.0, "ts": now - 31_000}]},
        )  # older than the last: refused, changes nothing
        api.daemon.engine.clock = lambda: now + 1_500  # the engine clock 31.5 s past the tick
        api.daemon.runtime.clock_turn()
        tripped = (await api.ok("GET", "/v1/breakers"))["tripped"]
        assert tripped["rule"] == "stale_feeds"
        assert tripped["details"] == {
            "rule": "stale_feeds",
            "token": TOKEN,
            "age_s": 30.5,
            "threshold_s": 30,
        }
