"""Signal fetches coalesced: tokens asked for while a fetch waits for its turn at the rate gate
go out in that same request (up to the per-request address limit), so a burst of signals for
new tokens costs one request slot, not one each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tradingd.engine.model import Tick

log = logging.getLogger("tradingd.feeds.dexscreener")


class _Batch:
    """The tokens of one fetch request and the ticks it brought (set once, never raises)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.tokens: dict[str, None] = {}  # insertion-ordered set
        self.result: asyncio.Future[list[Tick]] = loop.create_future()
        self.waiting = 0  # callers still awaiting the result


class FetchBatcher:
    """`fetch(tokens)` returns the ticks of `tokens` from the next request(s) that carry them.

    `wait_turn()` waits for a request slot (the gate, at fetch priority); `send(tokens)` makes
    the request and returns its ticks ([] on a failure it counted itself). A batch whose
    callers all gave up before its turn sends nothing."""

    def __init__(
        self,
        wait_turn: Callable[[], Awaitable[None]],
        send: Callable[[list[str]], Awaitable[list[Tick]]],
        max_tokens: int,
    ) -> None:
        self._wait_turn = wait_turn
        self._send = send
        self.max_tokens = max_tokens
        self._open: _Batch | None = None  # the batch still taking tokens (not yet its turn)
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0  # requests sent for fetches
        self.skipped = 0  # batches nobody waited for any more

    async def fetch(self, tokens: list[str]) -> list[Tick]:
        """Ticks of `tokens` (each at most once per request that carried it). Cancel the call
        to give up; the request goes on for the other callers of its batch."""
        batches: list[_Batch] = []
        for token in dict.fromkeys(tokens):
            batch = self._open
            if batch is None or len(batch.tokens) >= self.max_tokens:
                batch = self._start()
            batch.tokens[token] = None
            if batch not in batches:
                batches.append(batch)
        for batch in batches:
            batch.waiting += 1
        try:
            results = await asyncio.gather(*(asyncio.shield(b.result) for b in batches))
        finally:
            for batch in batches:
                batch.waiting -= 1
        wanted = set(tokens)
        return [t for ticks in results for t in ticks if t.token in wanted]

    def _start(self) -> _Batch:
        loop = asyncio.get_running_loop()
        batch = _Batch(loop)
        self._open = batch
        task = loop.create_task(self._run(batch), name="dexscreener-fetch")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch

    async def _run(self, batch: _Batch) -> None:
        ticks: list[Tick] = []
        try:
            await self._wait_turn()
            if self._open is batch:
                self._open = None  # its turn came: later tokens go in the next batch
            if batch.waiting > 0:
                self.requests += 1
                ticks = await self._send(list(batch.tokens))
            else:
                self.skipped += 1
        except Exception:  # a bug: the callers get no tick, the feed goes on
            log.exception("dexscreener: a signal fetch failed unexpectedly")
        finally:
            if self._open is batch:
                self._open = None
            if not batch.result.done():
                batch.result.set_result(ticks)

    async def close(self) -> None:
        """Cancel the batches still waiting or in flight (their callers get [])."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
