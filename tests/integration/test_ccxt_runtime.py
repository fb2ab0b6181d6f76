"""The runtime and the CCXT venue together: an order whose answer was lost and whose lookups
then fail (the exchange answers 503 for a long while) is never failed by the runtime, which
would release the buy's reservation while the order exists and filled: it stays in flight,
looked up again and again, and is settled once the exchange answers."""

from __future__ import annotations

import asyncio
import time

from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.adapters.venues.ccxt.client import ExchangeClient
from tradingd.adapters.venues.ccxt.markets import market_rules
from tradingd.adapters.venues.ccxt.venue import CcxtVenue
from tradingd.engine.config import config_from_builtins
from tradingd.engine.core import Engine
from tradingd.engine.model import ExchangeSubmission, Signal, Tick

from tests.fakes.binance import FakeBinance
from tests.fakes.binance_ccxt import async_binance
from tests.integration.test_ccxt_venue import Settings

BTC = "binance:BTC/USDT"
VENUE = "ccxt:main"


class Journal:
    """The daemon's journal on the memory store."""

    def __init__(self, engine: Engine, runtime: Runtime) -> None:
        self.engine, self.runtime = engine, runtime

    async def exchange_order_sent(self, order_id: str, sent: ExchangeSubmission) -> None:
        self.runtime.apply(self.engine.on_exchange_order_sent, order_id, sent)


def test_an_order_whose_lookups_keep_failing_stays_in_flight_until_the_exchange_answers():
    async def scenario() -> None:
        fake = FakeBinance()
        await fake.start()
        fake.set_balance("USDT", "100000")
        exchange = async_binance(fake, timeout_ms=300)
        try:
            await exchange.load_markets()
            rules = market_rules(exchange.markets["BTC/USDT"], exchange.precisionMode)
            engine = Engine(
                lambda: int(time.time() * 1000),
                instruments={BTC: rules},
                venue_exchanges={VENUE: "binance"},
            )
            runtime = Runtime(engine, {})
            runtime.UNRESOLVED_WAIT_S = 0.02  # type: ignore[misc]
            client = ExchangeClient(
                "main", exchange, CircuitBreaker("main", failure_threshold=1000, reset_after_s=5), 0.8
            )  # fmt: skip
            runtime.venues[VENUE] = CcxtVenue(
                "main", client, journal=Journal(engine, runtime), rules_of=engine.instruments.get,
                price_of=engine.price_usd, clock=engine.clock,
                settings=Settings(order_lookup_attempts=1, order_lookup_interval_ms=10),
                alert=lambda *_: None,
            )  # fmt: skip
            config = config_from_builtins(
                {
                    "sizing": {"mode": "fixed", "amount": "100000000"},
                    "stop_loss": {"enabled": False},
                }
            )
            agent = runtime.apply(engine.create_agent, "a", VENUE, config, "USDT")
            runtime.apply(engine.deposit, agent.id, "USDT", 1_000 * 10**6)
            now = engine.clock()
            runtime.push_ticks([Tick(BTC, 65_000.0, now)])
            # Accepted and filled, the answer lost; then 30 answers of 503 to the lookups: far
            # past the venue's own tries and the runtime's 3 buy attempts.
            fake.accept_then_hang(delay_s=5.0)
            record, _ = runtime.submit_signal(
                Signal(id="s1", token=BTC, received_at=now, expires_at=now + 1_000)
            )
            for _ in range(200):
                if fake.order_posts():
                    break
                await asyncio.sleep(0.01)
            fake.server_error(503, n=30, path="/api/v3/order")
            assert await runtime.wait_orders(20.0)
            execution = record.executions[agent.id]
            assert execution.status == "filled", execution
            assert len(fake.order_posts()) == 1  # one order, never a second
            position = engine.positions[execution.position_id]
            assert position.amount > 0
            bal = engine.ledger.balance(agent.id, "USDT")
            assert bal.reserved == 0 and bal.total < 1_000 * 10**6
        finally:
            await exchange.close()
            await fake.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
