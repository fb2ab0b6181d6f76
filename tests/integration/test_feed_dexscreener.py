"""DexScreenerFeed against a fake DexScreener (tests/fakes/dexscreener.py) speaking the contract's
wire format: each token's best pair becomes its Tick, requests stay within 30 addresses and the
rate, a 429's Retry-After holds every request, and every fault of
../shared/contracts/dexscreener.md is survived — the feed keeps polling, recovers, and pushes no
bad price."""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import AsyncIterator, Callable, Collection

import msgspec
import pytest
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.app.settings import DexScreenerFeedSettings
from tradingd.adapters.feeds.dexscreener import DexScreenerFeed
from tradingd.adapters.feeds.dexscreener.fetches import FetchBatcher
from tradingd.adapters.feeds.dexscreener.parsing import (
    best_pair,
    decode_pairs,
    price_usd,
    quote_addresses,
)
from tradingd.adapters.feeds.dexscreener.rate import FETCH, POLL, RequestGate
from tradingd.adapters.feeds.dexscreener.schemas import Pair
from tradingd.adapters.feeds.retry import retry_after_s
from tradingd.adapters.feeds.synthetic import demo_mint
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import Signal, Tick

from tests.fakes.dexscreener import (
    BABY,
    USDC,
    WSOL,
    BlackHole,
    FakeDexScreener,
    meteora_pair,
    pumpfun_pair,
    pumpswap_pair,
    sol_usdc_pair,
)
from tests.polling import poll_until_async

NOW = 1_796_000_000_000  # the injected clock: ticks carry it as their receive time
LOW = demo_mint("DEXLOW")  # a token whose only pool is shallow
MANY = [demo_mint(f"DEXMANY{i}") for i in range(65)]
GOOD_PRICES = {0.0002035, 143.21}  # what the fixture's table prices BABY and WSOL at


class MaxRandom(random.Random):
    """Full jitter at its ceiling: every backoff waits its whole cap (bounds become exact)."""

    def uniform(self, a: float, b: float) -> float:
        return b


def settings(url: str, **kw: object) -> DexScreenerFeedSettings:
    base: dict[str, object] = {
        "url": url,
        "interval_ms": 100,
        "backoff_max_ms": 50,
        "request_timeout_s": 1.0,
        "max_response_bytes": 256 * 1024,
    }
    return DexScreenerFeedSettings(**(base | kw))  # type: ignore[arg-type]


def low_pair() -> dict[str, object]:
    pair = meteora_pair()
    pair["pairAddress"] = demo_mint("DEXLOWPOOL")
    pair["baseToken"] = {"address": LOW, "name": "Shallow", "symbol": "LOW"}
    pair["priceUsd"] = "0.5"
    pair["liquidity"] = {"usd": 900.0, "base": 900, "quote": 6}
    return pair


class Running:
    """A DexScreenerFeed running as a task, collecting its batches."""

    def __init__(self, feed: DexScreenerFeed) -> None:
        self.feed = feed
        self.batches: list[list[Tick]] = []
        self.task = asyncio.get_running_loop().create_task(feed.run(self.batches.append))

    @property
    def ticks(self) -> list[Tick]:
        return [t for b in self.batches for t in b]

    async def ticks_reach(self, n: int, timeout_s: float = 10.0) -> None:
        await poll_until_async(
            lambda: len(self.ticks) >= n, what=f"{n} ticks", timeout_s=timeout_s, tries=10_000
        )

    async def counter_reaches(self, name: str, n: int, timeout_s: float = 10.0) -> None:
        await poll_until_async(
            lambda: self.feed.counters().get(name, 0) >= n,
            what=f"{name} >= {n}",
            timeout_s=timeout_s,
            tries=10_000,
        )

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDexScreener]:
    dex = FakeDexScreener()
    dex.set_pairs(BABY, pumpfun_pair(), meteora_pair(), pumpswap_pair())
    dex.set_pairs(WSOL, sol_usdc_pair())
    await dex.start()
    yield dex
    await dex.close()


@pytest.fixture
async def start(fake: FakeDexScreener) -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def make(
        watched: Callable[[], Collection[str]] = lambda: [BABY, WSOL],
        url: str | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], int] = lambda: NOW,
        **kw: object,
    ) -> Running:
        feed = DexScreenerFeed(settings(url or fake.url, **kw), watched, clock=clock, rng=rng)
        r = Running(feed)
        running.append(r)
        return r

    yield make
    for r in running:
        await r.stop()


def pairs_of(*raw: dict[str, object]) -> list[Pair]:
    return list(decode_pairs(msgspec.json.encode(list(raw))).pairs)  # type: ignore[arg-type]


def assert_only_good_prices(r: Running) -> None:
    assert {t.price_usd for t in r.ticks} <= GOOD_PRICES


# -- prices ------------------------------------------------------------------------------------


async def test_each_response_is_one_batch_of_the_best_pairs_ticks(start) -> None:  # type: ignore[no-untyped-def]
    r = start()
    await r.ticks_reach(2)
    first = r.batches[0]
    assert [t.token for t in first] == [BABY, WSOL]
    baby, sol = first
    assert baby == Tick(
        BABY,
        0.0002035,
        NOW,
        "dexscreener",
        decimals=None,
        liquidity_usd=36295.05,
        market_cap_usd=203536.0,
        fdv_usd=203536.0,
        volume_24h_usd=564990.98,
        pair_created_at=1772427561000,
    )
    assert (sol.price_usd, sol.liquidity_usd, sol.market_cap_usd, sol.fdv_usd) == (
        143.21,
        11823044.7,
        None,
        None,
    )
    health = r.feed.health()
    assert health["status"] == "ok" and health["tokens"] == sorted([BABY, WSOL])
    assert r.feed.counters()["errors_no_pair"] == 0


async def test_prices_and_liquidity_reach_the_engine_and_a_liquidity_filtered_signal_buys(
    fake: FakeDexScreener,
) -> None:
    fake.set_pairs(LOW, low_pair())
    engine = Engine(wall_clock_ms, watchlist=[BABY, LOW])
    runtime = Runtime(engine, {"paper": PaperVenue(engine.price_usd, wall_clock_ms)})
    config = config_from_builtins({"signals": {"min_liquidity_usd": 10_000}})
    agent = runtime.apply(engine.create_agent, "dex", "paper", config, "SOL")
    runtime.apply(engine.deposit, agent.id, "SOL", 10 * 10**9)
    feed = DexScreenerFeed(settings(fake.url), engine.watched_tokens)
    task = asyncio.create_task(feed.run(runtime.push_ticks))
    try:
        await poll_until_async(
            lambda: {BABY, LOW, WSOL} <= set(engine.prices), what="dexscreener prices"
        )
        assert engine.prices[BABY].price_usd == 0.0002035
        assert engine.prices[BABY].source == "dexscreener"
        assert engine.prices[WSOL].price_usd == 143.21  # the SOL quote is watched and priced
        now = wall_clock_ms()
        for sid, token in (("deep", BABY), ("shallow", LOW)):
            signal = Signal(id=sid, token=token, received_at=now, expires_at=now + 30_000)
            runtime.apply(engine.on_signal, signal)
        assert await runtime.wait_orders(5.0)
        deep = engine.signals["deep"].executions[agent.id]
        shallow = engine.signals["shallow"].executions[agent.id]
        assert deep.status == "filled"
        assert (shallow.status, shallow.reason) == ("skipped", "liquidity_below_min")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_token_without_a_usable_pair_gets_no_tick_and_is_counted(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    nulled = pumpswap_pair() | {"priceUsd": None}
    fake.set_pairs(LOW, nulled)  # LOW asks, but the only pair is BABY's, and without a price
    r = start(watched=lambda: [BABY, LOW, USDC])
    await r.counter_reaches("passes", 2)
    assert {t.token for t in r.ticks} == {BABY}
    assert r.feed.counters()["errors_no_pair"] >= 4  # LOW and USDC ([] from the fake), twice


# -- pair choice (pure) -------------------------------------------------------------------------


def test_highest_usd_liquidity_wins_and_missing_liquidity_ranks_lowest() -> None:
    pairs = pairs_of(pumpfun_pair(), meteora_pair(), pumpswap_pair())
    pair, price = best_pair(pairs, BABY, "solana") or (None, None)
    assert pair is not None and pair.dex_id == "pumpswap" and price == 0.0002035
    pair, price = best_pair(pairs_of(pumpfun_pair(), meteora_pair()), BABY, "solana") or (None, 0)
    assert pair is not None and pair.dex_id == "meteora"
    pair, price = best_pair(pairs_of(pumpfun_pair()), BABY, "solana") or (None, 0)
    assert pair is not None and pair.dex_id == "pumpfun" and price == 0.0001842


def test_equal_liquidity_is_decided_by_pair_address_whatever_the_order() -> None:
    a = meteora_pair() | {"pairAddress": "AAA", "priceUsd": "1"}
    b = meteora_pair() | {"pairAddress": "BBB", "priceUsd": "2"}
    for order in ((a, b), (b, a), (a, b, a)):  # duplicates are harmless too
        found = best_pair(pairs_of(*order), BABY, "solana")
        assert found is not None and found[0].pair_address == "AAA"


def test_quote_filter_keeps_only_listed_quote_tokens_by_address() -> None:
    usdc = meteora_pair() | {
        "pairAddress": "USDCPOOL",
        "priceUsd": "0.00021",
        "quoteToken": {"address": USDC, "name": "USD Coin", "symbol": "usdc"},
    }
    pairs = pairs_of(pumpswap_pair(), usdc)
    quotes = quote_addresses("solana", ["usdc"])
    assert best_pair(pairs, BABY, "solana", quotes)[0].pair_address == "USDCPOOL"  # type: ignore[index]
    both = quote_addresses("solana", ["SOL", "USDC"])
    assert best_pair(pairs, BABY, "solana", both)[0].dex_id == "pumpswap"  # type: ignore[index]
    assert best_pair(pairs, BABY, "solana", quote_addresses("solana", ["USDT"])) is None


def test_a_pool_whose_quote_only_calls_itself_sol_is_not_a_sol_pool() -> None:
    # the re-attack: a scam pool quoted in a token named "SOL", with inflated liquidity and a
    # price 10,000x lower, priced the token and sold a position
    fake_sol = pumpswap_pair() | {
        "pairAddress": "SCAMPOOL",
        "priceUsd": "0.00000002035",
        "liquidity": {"usd": 9e9, "base": 1, "quote": 1},
        "quoteToken": {"address": "Sca11111111111111111111111111111111111111", "symbol": "SOL"},
    }
    pairs = pairs_of(pumpswap_pair(), fake_sol)
    found = best_pair(pairs, BABY, "solana", quote_addresses("solana", ["SOL"]))
    assert found is not None and found[0].dex_id == "pumpswap" and found[1] == 0.0002035


def test_pairs_of_another_chain_or_with_the_token_as_quote_are_ignored() -> None:
    other_chain = pumpswap_pair() | {"chainId": "base", "liquidity": {"usd": 9e9}}
    quote_side = sol_usdc_pair() | {
        "baseToken": {"address": USDC, "symbol": "USDC"},
        "quoteToken": {"address": BABY, "symbol": "Solana"},
        "priceUsd": "1.0",
        "liquidity": {"usd": 9e9},
    }
    found = best_pair(pairs_of(other_chain, quote_side, meteora_pair()), BABY, "solana")
    assert found is not None and found[0].dex_id == "meteora"
    assert best_pair(pairs_of(other_chain, quote_side), BABY, "solana") is None


def test_null_or_unusable_prices_are_skipped_for_the_next_pool() -> None:
    implausible = ("9100000000000000", "0.0000000000000001")  # > 1e12 or < 1e-15 USD
    for bad in (
        None,
        "",
        "0",
        "0.0",
        "-1",
        "NaN",
        "Infinity",
        "1e999",
        "1e-999",
        "1_000",
        " 1",
        *implausible,
    ):
        best = pumpswap_pair() | {"priceUsd": bad}
        found = best_pair(pairs_of(best, meteora_pair()), BABY, "solana")
        assert found is not None and found[0].dex_id == "meteora", bad


def test_evm_addresses_match_whatever_their_case_and_solana_ones_exactly() -> None:
    checksummed = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    pair = pumpswap_pair() | {"chainId": "ethereum", "baseToken": {"address": checksummed}}
    found = best_pair(pairs_of(pair), checksummed.lower(), "ethereum")
    assert found is not None and found[1] == 0.0002035
    assert best_pair(pairs_of(pumpswap_pair()), BABY.lower(), "solana") is None


def test_prices_are_parsed_as_decimal_text() -> None:
    assert price_usd("0.0000000001575") == 1.575e-10
    assert price_usd("0.0002035") == 0.0002035
    assert price_usd("61630.880000000000000000001") == 61630.88
    assert price_usd("1.5E-7") == 1.5e-07
    assert price_usd("9" * 65) is None  # longer than any price


def test_socials_decode_in_the_documented_and_the_observed_form() -> None:
    documented = pumpswap_pair()
    documented["info"] = {"socials": [{"platform": "twitter", "handle": "babyelephant"}]}
    observed, doc = pairs_of(pumpswap_pair(), documented)
    assert isinstance(observed, Pair) and isinstance(doc, Pair)
    assert observed.info is not None and observed.info.socials is not None
    assert observed.info.socials[0].type == "twitter"
    assert observed.info.open_graph is not None and observed.boosts is not None
    assert doc.info is not None and doc.info.socials is not None
    assert doc.info.socials[0].handle == "babyelephant"


def test_a_pair_whose_other_fields_changed_shape_still_prices_and_junk_items_are_counted() -> None:
    odd = pumpswap_pair() | {"info": "now a string", "txns": [1, 2], "labels": {"x": 1}}
    body = msgspec.json.encode([odd, 42, "x", meteora_pair(), {"chainId": 7}])
    decoded = decode_pairs(body)
    assert decoded.malformed == 3
    found = best_pair(decoded.pairs, BABY, "solana")
    assert found is not None and found[1] == 0.0002035


def test_bodies_that_are_not_an_array_of_pairs_are_malformed() -> None:
    from tradingd.adapters.feeds.dexscreener.parsing import MalformedBody

    for body in (b"<html>502</html>", b'[{"chainId":"solana"', b'{"pairs":null}', b""):
        with pytest.raises(MalformedBody):
            decode_pairs(body)
    assert decode_pairs(b"[]").pairs == []


# -- requests: batching, rate, watched set ---------------------------------------------------------


async def test_requests_carry_at_most_max_addresses_and_cover_every_watched_token(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    r = start(watched=lambda: MANY)  # 65 tokens: 30 + 30 + 5
    await r.counter_reaches("passes", 1)
    first_pass = fake.token_requests()[:3]
    assert [len(q.addresses) for q in first_pass] == [30, 30, 5]
    assert {a for q in first_pass for a in q.addresses} == set(MANY)
    assert all(q.chain == "solana" for q in first_pass)
    await r.stop()
    small = start(watched=lambda: MANY[:25], max_addresses_per_request=10)
    await small.counter_reaches("passes", 1)
    assert [len(q.addresses) for q in fake.token_requests()[-3:]] == [10, 10, 5]
    assert max(len(q.addresses) for q in fake.token_requests()) <= 30


async def test_requests_are_spaced_by_the_rate_bucket(fake: FakeDexScreener, start) -> None:  # type: ignore[no-untyped-def]
    per_min = 300  # 0.2 s apart; a pass of 13 requests cannot finish in its 100 ms interval
    r = start(watched=lambda: MANY, max_addresses_per_request=5, max_requests_per_min=per_min)
    await poll_until_async(lambda: len(fake.requests) >= 11, what="11 requests", tries=10_000)
    times = [q.at for q in fake.requests[:11]]
    # the pass outlives its interval and simply goes on: no restart, no second pass beside it
    assert r.feed.counters()["passes"] == 0
    ordered = sorted(MANY)
    assert [q.addresses for q in fake.requests[:11]] == [
        ordered[i : i + 5] for i in range(0, 55, 5)
    ]
    spacing = 60 / per_min
    # lower bounds only (a slow machine spaces them more); 0.15 s for the way through the socket
    assert times[-1] - times[0] >= 10 * spacing - 0.15
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 5 * spacing - 0.15


async def test_only_watched_tokens_are_polled_and_a_changed_set_is_followed(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    watched = [BABY, "binance:BTC/USDT"]  # a CCXT instrument is never DexScreener's
    r = start(watched=lambda: list(watched))
    await r.ticks_reach(1)
    assert fake.asked() == {BABY}
    assert not r.feed.covers("binance:BTC/USDT") and r.feed.covers(LOW)
    watched[:] = [WSOL]
    await poll_until_async(lambda: WSOL in fake.asked(), what="new set polled")
    switched = next(i for i, q in enumerate(fake.requests) if WSOL in q.addresses)
    await r.counter_reaches("requests", switched + 3)
    assert all(q.addresses == [WSOL] for q in fake.requests[switched:])
    watched[:] = []
    await poll_until_async(lambda: r.feed.health()["status"] == "idle", what="idle")
    asked = len(fake.requests)
    await asyncio.sleep(0.3)  # three intervals with nothing watched
    assert len(fake.requests) == asked


async def test_fetch_prices_an_unwatched_token_ahead_of_the_polling_queue(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    fake.set_pairs(LOW, low_pair())
    # a long pass (13 requests, 0.2 s apart) is under way when the fetch comes
    r = start(watched=lambda: MANY, max_addresses_per_request=5)
    await r.counter_reaches("requests", 2)
    ticks = await asyncio.wait_for(r.feed.fetch([LOW, "binance:BTC/USDT"], 2.0), 3.0)
    assert [(t.token, t.price_usd, t.liquidity_usd) for t in ticks] == [(LOW, 0.5, 900.0)]
    at = next(i for i, q in enumerate(fake.requests) if q.addresses == [LOW])
    polls_before = [q for q in fake.requests[:at] if q.addresses != [LOW]]
    assert len(polls_before) <= 3  # the fetch took the next free slot, not the end of the pass
    assert LOW not in {t.token for t in r.ticks}  # fetched ticks are the caller's to push


async def test_fetches_waiting_together_share_one_request(fake: FakeDexScreener, start) -> None:  # type: ignore[no-untyped-def]
    tokens = MANY[:40]
    for i, token in enumerate(tokens):
        fake.set_pairs(
            token, low_pair() | {"baseToken": {"address": token}, "priceUsd": f"{i + 1}"}
        )
    r = start(watched=lambda: [BABY])
    await r.ticks_reach(1)
    asked = len(fake.requests)
    # ten signals at once, then one asking for 30 more: 40 tokens, two requests of <= 30
    calls = [r.feed.fetch([t], 3.0) for t in tokens[:10]] + [r.feed.fetch(tokens[10:], 3.0)]
    results = await asyncio.wait_for(asyncio.gather(*calls), 5.0)
    assert [[t.price_usd for t in ticks] for ticks in results[:10]] == [
        [i + 1.0] for i in range(10)
    ]
    assert [t.price_usd for t in results[10]] == [i + 1.0 for i in range(10, 40)]
    fetched = [q.addresses for q in fake.requests[asked:] if q.addresses != [BABY]]
    assert fetched == [tokens[:30], tokens[30:]]


async def test_a_fetch_batch_nobody_waits_for_any_more_sends_nothing() -> None:
    turn = asyncio.Event()
    sent: list[list[str]] = []

    async def send(tokens: list[str]) -> list[Tick]:
        sent.append(tokens)
        return [Tick(t, 1.0, NOW, "dexscreener") for t in tokens]

    batcher = FetchBatcher(turn.wait, send, 30)
    gave_up = asyncio.create_task(batcher.fetch([BABY]))
    await asyncio.sleep(0.01)
    gave_up.cancel()
    await asyncio.gather(gave_up, return_exceptions=True)
    turn.set()
    await poll_until_async(lambda: batcher.skipped == 1, what="skipped batch")
    assert sent == []
    assert [t.token for t in await asyncio.wait_for(batcher.fetch([WSOL]), 2)] == [WSOL]
    assert sent == [[WSOL]]
    await batcher.close()


async def test_fetch_before_run_uses_its_own_session(fake: FakeDexScreener) -> None:
    feed = DexScreenerFeed(settings(fake.url), lambda: [])
    ticks = await asyncio.wait_for(feed.fetch([BABY], 2.0), 3.0)
    assert [t.price_usd for t in ticks] == [0.0002035]


async def test_fetch_from_a_dead_server_returns_nothing_within_its_timeout(start) -> None:  # type: ignore[no-untyped-def]
    hole = BlackHole()
    url = await hole.start()
    try:
        r = start(url=url, request_timeout_s=5.0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        ticks = await asyncio.wait_for(r.feed.fetch([LOW], 0.5), 3.0)
        assert ticks == [] and loop.time() - began < 3.0
        assert r.feed.counters()["errors_fetch_timeout"] == 1
        assert hole.accepted >= 1
    finally:
        await hole.close()


# -- 429 and Retry-After ------------------------------------------------------------------------


async def test_retry_after_pauses_every_request_the_fetches_too(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    r = start()
    await r.ticks_reach(2)
    fake.fail_next(1, 429, headers={"Retry-After": "1"})
    await r.counter_reaches("errors_http_429", 1)
    limited = next(q for q in fake.requests if q.status == 429)
    health = r.feed.health()
    assert health["status"] == "backoff" and 0 < health["retry_after_s"] <= 1.0  # type: ignore[operator]
    # a fetch whose wait ends before the pause does gives up at once, asking nothing
    asked = len(fake.requests)
    assert await asyncio.wait_for(r.feed.fetch([LOW], 0.2), 1.0) == []
    assert len(fake.requests) == asked
    # a fetch that can wait is let through when the pause ends, like the poller
    fake.set_pairs(LOW, low_pair())
    ticks = await asyncio.wait_for(r.feed.fetch([LOW], 3.0), 4.0)
    assert [t.token for t in ticks] == [LOW]
    after = fake.requests[fake.requests.index(limited) + 1 :]
    assert after and all(q.at - limited.at >= 0.9 for q in after)
    ticks_before = len(r.ticks)
    await r.ticks_reach(ticks_before + 2)
    assert r.feed.health()["status"] == "ok"


async def test_retry_after_as_an_http_date_is_honoured(fake: FakeDexScreener, start) -> None:  # type: ignore[no-untyped-def]
    r = start()  # the feed's clock stands at NOW, a whole second: the date is exactly 1 s away
    await r.ticks_reach(2)
    when = email.utils.formatdate(NOW / 1000 + 1, usegmt=True)
    fake.fail_next(1, 429, headers={"Retry-After": when})
    await r.counter_reaches("errors_http_429", 1)
    limited = next(q for q in fake.requests if q.status == 429)
    n = len(r.ticks)
    await r.ticks_reach(n + 1)
    after = fake.requests[fake.requests.index(limited) + 1 :]
    assert after and all(q.at - limited.at >= 0.9 for q in after)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now_ms = 1_800_000_000_000
    assert retry_after_s("7", now_ms) == 7.0
    assert retry_after_s(" 1.5 ", now_ms) == 1.5
    date = email.utils.formatdate(now_ms / 1000 + 30, usegmt=True)
    assert retry_after_s(date, now_ms) == pytest.approx(30.0, abs=1.0)
    assert retry_after_s(email.utils.formatdate(now_ms / 1000 - 30, usegmt=True), now_ms) == 0
    assert retry_after_s("86400000", now_ms) == 600.0  # bounded
    for junk in (None, "", "soon", "nan"):
        assert retry_after_s(junk, now_ms) is None


async def test_a_burst_of_429s_without_retry_after_backs_off_and_recovers(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    # full jitter at its cap: pauses of 100, 200, 400, 800 ms (a cap of 800, starting at 1/8)
    r = start(rng=MaxRandom(), backoff_max_ms=800)
    await r.ticks_reach(2)
    fake.fail_next(4, 429)  # no body, no Retry-After
    await r.counter_reaches("errors_http_429", 4)
    assert r.feed.health()["status"] == "backoff"
    n = len(r.ticks)
    await r.ticks_reach(n + 2)
    limited = [i for i, q in enumerate(fake.requests) if q.status == 429]
    times = [fake.requests[i].at for i in [*limited, limited[-1] + 1]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # lower bounds only; the first two pauses hide behind the gate's 200 ms spacing
    assert gaps[2] >= 0.4 - 0.05 and gaps[3] >= 0.8 - 0.05
    assert r.feed.health()["status"] == "ok"
    assert_only_good_prices(r)


async def test_a_gate_serves_fetches_first_and_pauses_everyone() -> None:
    gate = RequestGate(600)  # 0.1 s apart
    order: list[str] = []

    async def ask(name: str, priority: int) -> None:
        await gate.acquire(priority)
        order.append(name)

    await gate.acquire(POLL)  # the slot now taken: everyone below waits
    tasks = [asyncio.create_task(ask(f"poll{i}", POLL)) for i in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(ask("fetch", FETCH)))
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["fetch", "poll0", "poll1", "poll2"]
    gate.pause(0.3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(gate.acquire(FETCH), 5)
    assert loop.time() - began >= 0.29
    cancelled = asyncio.create_task(gate.acquire(POLL))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait_for(gate.acquire(POLL), 5)  # a cancelled waiter holds nobody back


# -- every other fault --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_with_an_html_body_is_counted_backed_off_and_recovered_from(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
    status: int,
) -> None:
    r = start()
    await r.ticks_reach(2)
    fake.fail_next(3, status, b"<html><body>Bad gateway</body></html>", content_type="text/html")
    await r.counter_reaches("errors_http_5xx", 3)
    assert r.feed.health()["status"] == "down"  # three in a row
    assert f"HTTP {status}" in str(r.feed.health()["last_error"])
    n = len(r.ticks)
    await r.ticks_reach(n + 2)
    health = r.feed.health()
    assert health["status"] == "ok" and health["reconnects"] >= 3  # type: ignore[operator]
    assert_only_good_prices(r)


@pytest.mark.parametrize(
    ("mode", "counter"),
    [
        ("trickle", "errors_timeout"),  # a response that never ends
        ("slow", "errors_timeout"),  # an answer after the client timeout
        ("huge", "errors_too_large"),  # 10 MB, chunked: reading stops at the bound
        ("huge_declared", "errors_too_large"),  # 10 MB announced: not read at all
        ("reset", "errors_truncated"),  # connection reset mid-body
        ("truncated", "errors_malformed"),  # a complete response holding half the JSON
        ("html", "errors_malformed"),  # a 200 that is not JSON
    ],
)
async def test_a_bad_response_is_counted_and_polling_recovers_with_good_prices_only(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
    mode: str,
    counter: str,
) -> None:
    fake.slow_s = 1.5
    r = start(request_timeout_s=0.5)
    await r.ticks_reach(2)
    fake.mode_next(mode)
    await r.counter_reaches(counter, 1)
    n = len(r.ticks)
    await r.ticks_reach(n + 2)
    assert r.feed.counters()["reconnects"] == 1
    assert r.feed.health()["status"] == "ok"
    assert_only_good_prices(r)
    assert all(len(b) <= 2 for b in r.batches)


async def test_a_server_that_accepts_and_never_answers_times_out_and_backs_off(start) -> None:  # type: ignore[no-untyped-def]
    hole = BlackHole()
    url = await hole.start()
    try:
        r = start(url=url, request_timeout_s=0.2)
        await r.counter_reaches("errors_timeout", 3)
        health = r.feed.health()
        assert health["status"] == "down" and "timeout" in str(health["last_error"])
        assert r.ticks == []
    finally:
        await hole.close()


async def test_a_refused_connection_is_counted(start) -> None:  # type: ignore[no-untyped-def]
    hole = BlackHole()
    url = await hole.start()
    await hole.close()  # nobody listens there now
    r = start(url=url)
    await r.counter_reaches("errors_connection", 2)
    assert r.feed.health()["reconnects"] >= 2  # type: ignore[operator]


async def test_no_tick_for_three_intervals_is_stale(fake: FakeDexScreener) -> None:
    now = [NOW]
    feed = DexScreenerFeed(settings(fake.url), lambda: [BABY], clock=lambda: now[0])
    batches: list[list[Tick]] = []
    task = asyncio.create_task(feed.run(batches.append))
    try:
        await poll_until_async(lambda: batches, what="a tick")
        assert feed.health()["status"] == "ok"
        fake.set_pairs(BABY)  # no pair any more: requests succeed, no tick comes
        now[0] += 15_001  # max(15 s, 3 × 100 ms)
        health = feed.health()
        assert health["status"] == "stale" and health["last_tick_age_ms"] == 15_001
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_fake_refuses_31_addresses_and_the_client_never_sends_them(
    fake: FakeDexScreener,
) -> None:
    import aiohttp
    from tradingd.adapters.feeds.dexscreener.client import DexScreenerClient
    from tradingd.adapters.feeds.errors import FeedStatusError

    addresses = MANY[:31]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/tokens/v1/solana/{','.join(addresses)}") as resp:
            assert resp.status == 400
        async with session.get(f"{fake.url}/tokens/v1/solana/{MANY[0]}") as resp:
            assert await resp.json() == []  # unknown token: an empty array
        async with session.get(f"{fake.url}/latest/dex/tokens/{MANY[0]}") as resp:
            assert await resp.json() == {"schemaVersion": "1.0.0", "pairs": None}
        client = DexScreenerClient(session, fake.url, "solana", 2.0, 1 << 20, wall_clock_ms)
        asked = len(fake.requests)
        with pytest.raises(ValueError):
            await client.tokens(addresses)
        with pytest.raises(ValueError):
            await client.tokens(["binance:BTC/USDT"])
        assert len(fake.requests) == asked
        fake.fail_next(1, 404, "x" * 5000)
        with pytest.raises(FeedStatusError) as err:
            await client.tokens([BABY])
        assert len(err.value.text) <= 512


async def test_a_long_retry_after_makes_the_feed_stale_once_prices_age(
    fake: FakeDexScreener,
    start,  # type: ignore[no-untyped-def]
) -> None:
    # the attack: a 429 with a 10-minute Retry-After left /health "ok" (backoff) while pool
    # data aged past max_market_age_ms and every buy was skipped liquidity_unknown
    now = [NOW]
    r = start(clock=lambda: now[0])
    await r.ticks_reach(2)
    fake.fail_next(1, 429, headers={"Retry-After": "600"})
    await r.counter_reaches("errors_http_429", 1)
    assert r.feed.health()["status"] == "backoff"
    now[0] += 16_000  # past the stale window (15 s) with nothing new
    health = r.feed.health()
    assert health["status"] == "stale" and "rate limited" in health["reason"]  # type: ignore[operator]
