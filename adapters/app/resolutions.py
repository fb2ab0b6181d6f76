"""Start-up waits for orders a live venue recorded before a restart (a signed swap, an exchange
request): the control port opens once each is resolved by its venue, its order's task ended,
or the start-up bound passed, whichever comes first."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("tradingd.venues")


async def await_resolutions(
    waits: list[tuple[asyncio.Event, asyncio.Task[None]]], timeout_s: float, what: str
) -> None:
    """Wait up to `timeout_s` until every (resolution, order task) pair has its resolution set
    or its task ended; log how many (`what`: "swaps", "exchange orders") were still unresolved
    when the bound passed."""
    if not waits:
        return
    log.info(f"resolving recorded {what}", extra={"orders": len(waits)})
    futures = [asyncio.ensure_future(_first_of(event, task)) for event, task in waits]
    _done, pending = await asyncio.wait(futures, timeout=timeout_s)
    for wait in pending:
        wait.cancel()
    if pending:
        log.warning(
            f"recorded {what} still unresolved when the port opens",
            extra={"orders": len(pending), "timeout_s": timeout_s},
        )


async def _first_of(resolved: asyncio.Event, task: asyncio.Task[None]) -> None:
    wait = asyncio.ensure_future(resolved.wait())
    try:
        await asyncio.wait([wait, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        wait.cancel()
