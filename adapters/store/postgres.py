"""Postgres, the system of record: connections, migrations, writing one batch of stream entries
in one transaction, and reading the state back for recovery.

A batch is staged in a temporary table (COPY or executemany; `tradingd` measures both in
benchmarks/write_behind.py) and spread to the tables by set-based statements: events are
inserted once (ON CONFLICT DO NOTHING on the entry id), entities are upserted from their newest
entry in the batch and only over an older version."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Literal

import asyncpg
import msgspec
from tradingd.adapters.store.records import STORE_RECORDS, Entry

if TYPE_CHECKING:
    from tradingd.engine.core import Engine

StageMode = Literal["copy", "executemany"]
MIGRATE_LOCK = 0x7472_6164_696E_6764  # "trading" — pg_advisory_lock key for migrations
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS stage (
    id bigint NOT NULL, type text NOT NULL, key text NOT NULL, agent_id text NOT NULL, payload jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""

_records = ", ".join(f"'{t}'" for t in STORE_RECORDS)
# The set-based statements that spread a staged batch to the tables, each with the entry types it
# reads (None: every engine event, for `events`). A batch runs only the statements whose types it
# holds: an absent type would cost a scan of the stage for nothing.
SPREAD: tuple[tuple[frozenset[str] | None, str], ...] = (
    (
        None,
        f"""
INSERT INTO events (id, ts, type, agent_id, payload)
  SELECT id, (payload->>'ts')::bigint, type, NULLIF(agent_id, ''), payload FROM stage
  WHERE type NOT IN ({_records})
  ON CONFLICT (id) DO NOTHING""",
    ),
    (
        frozenset(("AgentSaved", "AgentDeleted")),
        """
INSERT INTO agents AS t (id, version, deleted, doc)
  SELECT DISTINCT ON (key) key, id, type = 'AgentDeleted', CASE WHEN type = 'AgentSaved' THEN payload->'agent' END
  FROM stage WHERE type IN ('AgentSaved', 'AgentDeleted') ORDER BY key, id DESC
  ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, deleted = EXCLUDED.deleted,
    doc = COALESCE(EXCLUDED.doc, t.doc), updated_at = now()
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        # The last deletion of each agent id, kept apart from the agent row (which a re-created
        # agent overwrites): recovery drops every balance, position and trade of that id written
        # before it, so a new agent with a deleted agent's id starts empty after any restart.
        frozenset(("AgentDeleted",)),
        """
INSERT INTO engine_state AS t (key, version, value)
  SELECT DISTINCT ON (key) 'deleted:' || key, id, payload FROM stage WHERE type = 'AgentDeleted'
  ORDER BY key, id DESC
  ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(("AgentCreated", "AgentConfigUpdated")),
        """
INSERT INTO agent_configs (agent_id, event_id, config, apply_to_open, created_at)
  SELECT key, id, payload->'config', COALESCE((payload->>'apply_to_open')::boolean, false), (payload->>'ts')::bigint
  FROM stage WHERE type IN ('AgentCreated', 'AgentConfigUpdated')
  ON CONFLICT DO NOTHING""",
    ),
    (
        frozenset(
            (
                "PositionOpened",
                "PositionChanged",
                "PositionClosed",
                "PositionSaved",
                "PositionDropped",
            )
        ),
        """
INSERT INTO positions AS t (id, version, agent_id, token, status, doc)
  SELECT DISTINCT ON (key) key, id, agent_id, payload->'position'->>'token',
    CASE WHEN type = 'PositionDropped' THEN 'dropped' ELSE payload->'position'->>'status' END, payload->'position'
  FROM stage WHERE type IN ('PositionOpened', 'PositionChanged', 'PositionClosed', 'PositionSaved', 'PositionDropped')
  ORDER BY key, id DESC
  ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
    token = COALESCE(EXCLUDED.token, t.token), doc = COALESCE(EXCLUDED.doc, t.doc)
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(
            ("OrderSubmitted", "SwapSubmitted", "ExchangeOrderSent", "OrderFilled", "OrderFailed")
        ),
        """
INSERT INTO orders AS t (id, version, agent_id, status, doc)
  SELECT DISTINCT ON (key) key, id, agent_id,
    CASE type WHEN 'OrderFilled' THEN 'filled' WHEN 'OrderFailed' THEN 'failed' ELSE 'submitted' END,
    CASE WHEN type IN ('OrderSubmitted', 'SwapSubmitted', 'ExchangeOrderSent')
      THEN payload->'order' END
  FROM stage WHERE type IN ('OrderSubmitted', 'SwapSubmitted', 'ExchangeOrderSent', 'OrderFilled',
    'OrderFailed')
  ORDER BY key, id DESC
  ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
    doc = COALESCE(EXCLUDED.doc, t.doc)
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(("OrderFilled",)),
        """
INSERT INTO trades (id, event_id, order_id, agent_id, position_id, side, token, amount, quote_amount, fee,
                    price_usd, ts, doc)
  SELECT tr->>'id', id, key, tr->>'agent_id', tr->>'position_id', tr->>'side', tr->>'token',
    (tr->>'amount')::numeric, (tr->>'quote_amount')::numeric, (tr->>'fee')::numeric,
    (tr->>'price_usd')::double precision, (tr->>'ts')::bigint, tr
  FROM (SELECT id, key, payload->'trade' AS tr FROM stage WHERE type = 'OrderFilled') f
  ON CONFLICT (id) DO NOTHING""",
    ),
    (
        frozenset(("BalanceChanged",)),
        """
INSERT INTO balances AS t (agent_id, asset, version, decimals, total, reserved)
  SELECT DISTINCT ON (key) agent_id, payload->>'asset', id, (payload->>'decimals')::int,
    (payload->>'total')::numeric, (payload->>'reserved')::numeric
  FROM stage WHERE type = 'BalanceChanged' ORDER BY key, id DESC
  ON CONFLICT (agent_id, asset) DO UPDATE SET version = EXCLUDED.version, decimals = EXCLUDED.decimals,
    total = EXCLUDED.total, reserved = EXCLUDED.reserved
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(("SignalSaved",)),
        """
INSERT INTO signals AS t (id, version, client_id, token, side, received_at, agents_matched, doc)
  SELECT DISTINCT ON (key) key, id, payload->'signal'->>'client_id', payload->'signal'->>'token',
    COALESCE(payload->'signal'->>'side', 'buy'), (payload->'signal'->>'received_at')::bigint,
    (payload->>'agents_matched')::int, payload->'signal'
  FROM stage WHERE type = 'SignalSaved' ORDER BY key, id DESC
  ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, agents_matched = EXCLUDED.agents_matched,
    doc = EXCLUDED.doc
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(("SignalExecutionRecorded",)),
        """
INSERT INTO signal_executions AS t (signal_id, agent_id, version, status, doc)
  SELECT DISTINCT ON (key) payload->>'signal_id', agent_id, id, payload->>'status', payload
  FROM stage WHERE type = 'SignalExecutionRecorded' ORDER BY key, id DESC
  ON CONFLICT (signal_id, agent_id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
    doc = EXCLUDED.doc
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(("SignalFiltered",)),
        """
INSERT INTO signal_executions AS t (signal_id, agent_id, version, status, doc)
  SELECT s.payload->>'signal_id', r.key, s.id, 'skipped',
    jsonb_build_object('agent_id', r.key, 'status', 'skipped', 'reason', r.value)
  FROM stage s, jsonb_each_text(s.payload->'reasons') r WHERE s.type = 'SignalFiltered'
  ON CONFLICT (signal_id, agent_id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
    doc = EXCLUDED.doc
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        # The newest entry of each resting entry gives its status; its document comes from its
        # EntryRested, in this batch or already in the row (an ended row keeps it as history).
        frozenset(("EntryRested", "EntryEnded")),
        """
INSERT INTO resting_entries AS t (id, version, agent_id, signal_id, token, status, reason, order_id, doc)
  SELECT n.key, n.id, n.agent_id, n.signal_id, n.token, n.status, n.reason, n.order_id, r.doc
  FROM (
    SELECT DISTINCT ON (key) key, id, agent_id,
      COALESCE(payload->'entry'->>'signal_id', payload->>'signal_id') AS signal_id,
      COALESCE(payload->'entry'->>'token', payload->>'token') AS token,
      CASE type WHEN 'EntryRested' THEN 'resting' ELSE payload->>'outcome' END AS status,
      NULLIF(payload->>'reason', '') AS reason, payload->>'order_id' AS order_id
    FROM stage WHERE type IN ('EntryRested', 'EntryEnded') ORDER BY key, id DESC
  ) n LEFT JOIN (
    SELECT DISTINCT ON (key) key, payload->'entry' AS doc
    FROM stage WHERE type = 'EntryRested' ORDER BY key, id DESC
  ) r USING (key)
  ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, status = EXCLUDED.status,
    reason = EXCLUDED.reason, order_id = EXCLUDED.order_id, doc = COALESCE(EXCLUDED.doc, t.doc)
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        # Scorecards (engine/scorecards.py): one row per card, key "card<US>agent<US>source".
        frozenset(("ScorecardSaved",)),
        """
INSERT INTO engine_state AS t (key, version, value)
  SELECT DISTINCT ON (key) key, id, payload->'saved' FROM stage WHERE type = 'ScorecardSaved'
  ORDER BY key, id DESC
  ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value
  WHERE t.version < EXCLUDED.version""",
    ),
    (
        frozenset(("HaltChanged",)),
        """
INSERT INTO engine_state AS t (key, version, value)
  SELECT DISTINCT ON (key) key, id, payload FROM stage WHERE type = 'HaltChanged' ORDER BY key, id DESC
  ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value
  WHERE t.version < EXCLUDED.version""",
    ),
)
SPREAD_SQL = ";\n\n".join(sql for _, sql in SPREAD) + ";\n"  # every statement


def check_schema(schema: str) -> str:
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"store namespace {schema!r}: use lower-case letters, digits and _")
    return schema


async def _set_codecs(conn: asyncpg.Connection) -> None:
    # Entry payloads are JSON bytes already: send them as they are (binary jsonb is a version byte
    # and the text) and hand documents back as text for msgspec, with no json module round trip.
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", format="binary", encoder=_jsonb_out, decoder=_jsonb_in
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", format="binary", encoder=_json_out, decoder=_json_in
    )


def _jsonb_out(value: bytes | str) -> bytes:
    return b"\x01" + (value if isinstance(value, bytes) else value.encode())


def _jsonb_in(data: bytes) -> str:
    return data[1:].decode()


def _json_out(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _json_in(data: bytes) -> str:
    return data.decode()


async def connect(
    url: str, schema: str, *, timeout: float = 10.0, idle_in_transaction_ms: int | None = None
) -> asyncpg.Connection:
    """A connection on `schema`. `idle_in_transaction_ms`: the server ends this session's
    transaction once it sat idle that long (a hot standby's writer: a frozen old active must not
    hold row locks the new active's writer waits on)."""
    settings = {"search_path": check_schema(schema), "application_name": "tradingd"}
    if idle_in_transaction_ms is not None:
        settings["idle_in_transaction_session_timeout"] = str(idle_in_transaction_ms)
    conn = await asyncpg.connect(url, timeout=timeout, command_timeout=60, server_settings=settings)
    await _set_codecs(conn)
    return conn


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("tradingd.adapters.store") / "migrations"
    files = sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), sql) for name, sql in files]


async def migrate(url: str, schema: str) -> list[str]:
    """Apply pending migrations under an advisory lock; returns the versions applied now."""
    conn = await asyncpg.connect(
        url, timeout=10, server_settings={"search_path": check_schema(schema)}
    )
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)
    finally:
        await conn.close()
    return applied


class BatchWriter:
    """Writes batches of entries on one connection; the caller owns retries and reconnects.

    A batch is written in two steps on one transaction: `stage` (begin, stage the rows, insert
    the events: the bulk of the work, and no entity row is touched) and `finish` (upsert the
    entities, commit). The writer runs the `stage` of one batch on a second connection while the
    previous batch finishes, and the `finish` steps strictly in batch order."""

    STAGE_COLUMNS = ("id", "type", "key", "agent_id", "payload")

    def __init__(self, conn: asyncpg.Connection, mode: StageMode = "copy") -> None:
        self.conn = conn
        self.mode = mode
        self._ready = False
        self._tx: asyncpg.transaction.Transaction | None = None
        self._rest = ""

    async def write(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        try:
            await self.stage(entries)
            await self.finish()
        except BaseException:
            await self.abort()
            raise

    async def stage(self, entries: Sequence[Entry]) -> None:
        conn = self.conn
        if not self._ready:
            await conn.execute(STAGE_DDL)
            self._ready = True
        rows = [(e.id, e.type, e.key, e.agent, e.payload) for e in entries]
        events, self._rest = spread_steps({e.type for e in entries})
        self._tx = tx = conn.transaction()
        await tx.start()
        if self.mode == "copy":
            await conn.copy_records_to_table("stage", records=rows, columns=self.STAGE_COLUMNS)
        else:
            await conn.executemany("INSERT INTO stage VALUES ($1, $2, $3, $4, $5)", rows)
        if events:
            await conn.execute(events)

    async def finish(self) -> None:
        tx = self._tx
        assert tx is not None, "finish() without stage()"
        if self._rest:
            # Refused here (an entity upsert the stage accepted), the transaction stays ours
            # for abort() to roll back: left open in its failed state, every later statement on
            # the connection failed, the salvage too, and it was taken for an outage.
            await self.conn.execute(self._rest)
        self._tx = None
        await tx.commit()

    async def abort(self) -> None:
        tx, self._tx = self._tx, None
        if tx is not None and not self.conn.is_closed():
            await tx.rollback()


_spread_cache: dict[tuple[bool, ...], tuple[str, str]] = {}
_STORE_RECORDS = frozenset(STORE_RECORDS)


def spread_steps(types: set[str]) -> tuple[str, str]:
    """The statements of SPREAD a batch holding entries of `types` needs: (the `events` insert or
    "", the entity upserts as one script or "")."""
    has_events = not types <= _STORE_RECORDS
    wanted = tuple(has_events if trig is None else not trig.isdisjoint(types) for trig, _ in SPREAD)
    steps = _spread_cache.get(wanted)
    if steps is None:
        (_, events), *rest = SPREAD
        steps = _spread_cache[wanted] = (
            events if wanted[0] else "",
            ";\n".join(s for (_, s), w in zip(rest, wanted[1:], strict=True) if w),
        )
    return steps


def spread_sql(types: set[str]) -> str:
    """The statements of SPREAD a batch holding entries of `types` needs, as one script."""
    return ";\n".join(s for s in spread_steps(types) if s)


async def load_rows(
    conn: asyncpg.Connection, limits: RecoveryLimits
) -> dict[str, list[asyncpg.Record]]:
    """Everything recovery needs, as raw rows (decoded by recovery.StateBook): live entities,
    and as much history as the engine keeps in memory (closed positions, trades, signals)."""
    q = conn.fetch
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return {
            "agents": await q("SELECT id, version, deleted, doc FROM agents"),
            "balances": await q(
                "SELECT agent_id, asset, version, decimals, total, reserved FROM balances"
            ),
            "positions": await q(
                """SELECT id, version, status, doc FROM positions WHERE status NOT IN ('closed', 'dropped')
                   UNION ALL
                   SELECT id, version, status, doc FROM (
                     SELECT id, version, status, doc,
                            row_number() OVER (PARTITION BY agent_id ORDER BY version DESC) AS n
                     FROM positions WHERE status = 'closed') c WHERE n <= $1""",
                limits.closed_positions,
            ),
            "orders": await q(
                "SELECT id, version, status, doc FROM orders WHERE status = 'submitted'"
            ),
            "trades": await q(
                """SELECT event_id, doc FROM (
                     SELECT event_id, doc, row_number() OVER (PARTITION BY agent_id ORDER BY event_id DESC) AS n
                     FROM trades) t WHERE n <= $1 ORDER BY event_id""",
                limits.trades,
            ),
            "signals": await q(
                """SELECT id, version, agents_matched, doc FROM signals WHERE received_at > $2
                   ORDER BY received_at DESC, version DESC LIMIT $1""",
                limits.signals,
                limits.signals_after,
            ),
            "executions": await q(
                """SELECT e.signal_id, e.version, e.doc FROM signal_executions e
                   JOIN (SELECT id FROM signals WHERE received_at > $2
                         ORDER BY received_at DESC, version DESC LIMIT $1) s ON s.id = e.signal_id""",
                limits.signals,
                limits.signals_after,
            ),
            # Postgres holds signals the window leaves out: their ids are looked up there.
            "signals_older": await q(
                "SELECT EXISTS (SELECT 1 FROM signals WHERE received_at <= $1) AS older",
                limits.signals_after,
            ),
            "engine_state": await q("SELECT key, version, value FROM engine_state"),
            "entries": await q(
                "SELECT id, version, status, doc FROM resting_entries WHERE status = 'resting'"
            ),
            # Decimals the signals of resting entries named, for signals the window left out.
            "entry_decimals": await q(
                """SELECT DISTINCT s.token, (s.doc->>'decimals')::int AS decimals
                   FROM resting_entries r JOIN signals s ON s.id = r.signal_id
                   WHERE r.status = 'resting' AND s.doc->>'decimals' IS NOT NULL"""
            ),
        }


class RecoveryLimits(msgspec.Struct, frozen=True):
    """History loaded back into memory: what the engine itself keeps (engine.history.HistoryBounds):
    closed positions and trades per agent, and the dedupe window's signals, the newest
    `signals` received after `signals_after` (epoch ms)."""

    closed_positions: int
    trades: int
    signals: int
    signals_after: int = -1

    @classmethod
    def of_engine(cls, engine: Engine | None = None) -> RecoveryLimits:
        from tradingd.engine.history import HistoryBounds
        from tradingd.engine.state import TRADES_KEPT

        h = engine.history if engine is not None else HistoryBounds()
        after = engine.clock() - h.signal_window_ms if engine is not None else -1
        return cls(
            closed_positions=h.closed_kept,
            trades=TRADES_KEPT,
            signals=h.signals_kept,
            signals_after=after,
        )
