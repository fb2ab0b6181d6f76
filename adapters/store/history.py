"""Reads of history that left the engine's memory, from Postgres, the system of record: a signal
by id or client id (beyond the dedupe window), a position by id, and an agent's closed positions
and trades in the control port's sort order.

Every read is one indexed query on a small pool of its own (at most `POOL_SIZE` connections,
opened on first use), bounded by `timeout_s`; an unreachable or slow Postgres raises
StoreUnavailable (the control port answers 503), never hangs a request. Rows are what the writer
wrote behind, so an entry still in the Redis stream is not seen here: the engine's memory holds
it (the memory bounds are far above the writer's lag)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
from tradingd.adapters.http.text_rule import find_control_text
from tradingd.adapters.store.errors import StoreUnavailable
from tradingd.adapters.store.postgres import _set_codecs, check_schema
from tradingd.adapters.transient import POSTGRES_OUTAGES
from tradingd.engine.model import Execution, Position, Signal, Trade
from tradingd.engine.state import SignalRecord

POOL_SIZE = 2
_SIGNAL = """
SELECT s.doc, s.agents_matched,
  COALESCE((SELECT json_agg(e.doc ORDER BY e.version) FROM signal_executions e
            WHERE e.signal_id = s.id), '[]') AS executions
FROM signals s WHERE {where} ORDER BY s.received_at, s.version LIMIT 1"""
_executions = msgspec.json.Decoder(list[Execution])
_signal = msgspec.json.Decoder(Signal)
_position = msgspec.json.Decoder(Position)
_trade = msgspec.json.Decoder(Trade)


class HistoryReader:
    def __init__(self, database_url: str, schema: str, timeout_s: float = 2.0) -> None:
        self.database_url = database_url
        self.schema = check_schema(schema)
        self.timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        # Set at recovery: Postgres holds signals the restored window left out.
        self.signals_before_window = False

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.database_url,
                        min_size=0,
                        max_size=POOL_SIZE,
                        timeout=self.timeout_s,
                        command_timeout=self.timeout_s,
                        init=_set_codecs,
                        server_settings={
                            "search_path": self.schema,
                            "application_name": "tradingd-history",
                        },
                    )
                return await self._pool.fetch(sql, *args)
        except POSTGRES_OUTAGES as exc:
            raise StoreUnavailable(
                "history that left memory is in Postgres, which did not answer",
                {"reason": type(exc).__name__, "timeout_s": self.timeout_s},
            ) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await pool.close()
            except POSTGRES_OUTAGES:
                pool.terminate()

    async def _signal_where(self, where: str, value: str) -> SignalRecord | None:
        if find_control_text(value) is not None:  # no stored id has one; Postgres refuses NUL
            return None
        rows = await self._fetch(_SIGNAL.format(where=where), value)
        if not rows:
            return None
        r = rows[0]
        return SignalRecord(
            signal=_signal.decode(r["doc"]),
            executions={x.agent_id: x for x in _executions.decode(r["executions"])},
            agents_matched=r["agents_matched"],
        )

    async def signal(self, signal_id: str) -> SignalRecord | None:
        """The signal `signal_id` with its executions, as the engine held it; None if unknown."""
        return await self._signal_where("s.id = $1", signal_id)

    async def signal_by_client_id(self, client_id: str) -> SignalRecord | None:
        """The first signal submitted with the client's `id`; None if Postgres never saw it."""
        return await self._signal_where("s.client_id = $1", client_id)

    async def position(self, position_id: str) -> Position | None:
        if find_control_text(position_id) is not None:
            return None
        rows = await self._fetch(
            "SELECT doc FROM positions WHERE id = $1 AND status <> 'dropped' AND doc IS NOT NULL",
            position_id,
        )
        return _position.decode(rows[0]["doc"]) if rows else None

    async def closed_positions(
        self, agent_id: str, after: tuple[int, str] | None, limit: int
    ) -> list[Position]:
        """The agent's closed positions after the sort key `after` = (seq, id), oldest first."""
        seq, pid = after or (-1, "")
        rows = await self._fetch(
            """SELECT doc FROM positions
               WHERE agent_id = $1 AND status = 'closed'
                 AND ((doc->>'seq')::bigint, id COLLATE "C") > ($2::bigint, $3::text COLLATE "C")
               ORDER BY (doc->>'seq')::bigint, id COLLATE "C" LIMIT $4""",
            agent_id,
            seq,
            pid,
            limit,
        )
        return [_position.decode(r["doc"]) for r in rows]

    async def trades(self, agent_id: str, after: tuple[int, str] | None, limit: int) -> list[Trade]:
        """The agent's trades after the sort key `after` = (ts ms, id), oldest first."""
        ts, tid = after or (-(2**62), "")
        rows = await self._fetch(
            """SELECT doc FROM trades
               WHERE agent_id = $1 AND (ts, id COLLATE "C") > ($2::bigint, $3::text COLLATE "C")
               ORDER BY ts, id COLLATE "C" LIMIT $4""",
            agent_id,
            ts,
            tid,
            limit,
        )
        return [_trade.decode(r["doc"]) for r in rows]
