"""Moving agents between store namespaces (docs/cluster.md "Changing the shard count"): each
agent's rows from one Postgres schema to another in one transaction, and the fields of the Redis
live-view hashes that name it. Used by `tradingd cluster reshard` (reshard.py) on a stopped
cluster; every step here can run again after a crash and finds nothing left to do.

An agent's rows are every table row keyed by its id: the agent, its config revisions, balances,
positions, orders (in flight ones included: the new owner's recovery resumes them with their
venues), trades, its signal executions, resting entries and its scorecards (`engine_state` keys
`card<US><agent><US><source>`), and the `deleted:<agent>` marker of an earlier agent deleted under
its id. The signals its executions name are copied (agents_matched 0: the
sum over the shards stays the signal's count). The `events` journal and dead letters stay where
they were written: a journal of what that namespace's process did."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from tradingd.adapters.store.records import SEP
from tradingd.adapters.store.stream_codec import Keys

# Tables holding an agent's rows by an `agent_id` column, moved as they are (same migrations
# on both sides: `SELECT *` lines up).
BY_AGENT_ID = (
    "agent_configs",
    "balances",
    "positions",
    "orders",
    "trades",
    "signal_executions",
    "resting_entries",
)
CARD_PREFIX = "card" + SEP
# The live-view hashes that hold agents' entities (stream_codec.HASH_WRITES) and where in an
# entry's payload its agent is named.
AGENT_HASHES = ("agents", "balances", "positions", "orders", "entries")
_NESTED = {"positions": "position", "orders": "order", "entries": "entry"}
SCAN_COUNT = 500


def quoted(schema: str) -> str:
    """A schema name as an SQL identifier (names are checked by postgres.check_schema)."""
    return '"' + schema.replace('"', "") + '"'


async def agent_schemas(conn: Any, base: str) -> list[str]:
    """The schemas that may hold a cluster's agents: the base namespace's (one process) and
    every `<base>_s<i>` (a shard, of any count the cluster ever ran), that exist."""
    # namespaces are [a-z0-9_] (postgres.check_schema): nothing to escape in the pattern
    rows = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = $1 OR nspname ~ ('^' || $1 || '_s[0-9]+$')",
        base,
    )
    return sorted(r["nspname"] for r in rows)


async def agents_in(conn: Any, schema: str) -> list[str]:
    """Every agent id of a schema, deleted ones too (their rows, and the marker that keeps a
    re-created agent from their history, go with the id: a tester's finding, a deleted agent
    left behind made a later move of its re-created namesake conflict); [] without tables."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{quoted(schema)}.agents")
    if not exists:
        return []
    rows = await conn.fetch(f"SELECT id FROM {quoted(schema)}.agents")
    return [r["id"] for r in rows]


async def move_rows(conn: Any, src: str, dst: str, agent_ids: list[str]) -> dict[str, int]:
    """Move `agent_ids`' rows from schema `src` to `dst` inside the caller's transaction.
    Returns rows moved per table. Raises asyncpg's error on a conflict (a row the destination
    already holds): the transaction then moves nothing."""
    s, d = quoted(src), quoted(dst)
    moved: dict[str, int] = {}

    async def move(table: str, where: str) -> None:
        await conn.execute(
            f"INSERT INTO {d}.{table} SELECT * FROM {s}.{table} WHERE {where}", agent_ids
        )
        status = await conn.execute(f"DELETE FROM {s}.{table} WHERE {where}", agent_ids)
        moved[table] = int(status.rpartition(" ")[2])

    # signals named by the executions, copied before the executions arrive
    await conn.execute(
        f"""INSERT INTO {d}.signals (id, version, client_id, token, side, received_at,
                                     agents_matched, doc)
            SELECT id, version, client_id, token, side, received_at, 0, doc FROM {s}.signals
            WHERE id IN (SELECT signal_id FROM {s}.signal_executions WHERE agent_id = ANY($1))
            ON CONFLICT (id) DO NOTHING""",
        agent_ids,
    )
    await move("agents", "id = ANY($1)")
    for table in BY_AGENT_ID:
        await move(table, "agent_id = ANY($1)")
    # its scorecards, and the marker of an earlier agent deleted under the same id (recovery
    # drops what that one wrote: without it a re-created agent would get its history back)
    await move(
        "engine_state",
        f"(key LIKE '{CARD_PREFIX}%' AND split_part(key, chr(31), 2) = ANY($1))"
        " OR key = ANY(SELECT 'deleted:' || a FROM unnest($1::text[]) AS a)",
    )
    return moved


def agent_of_field(hash_name: str, field: str, value: bytes) -> str | None:
    """The agent a live-view hash field belongs to: the field itself (agents), its first part
    (balances: `<agent><US><asset>`), else the `agent_id` of the entity in the entry's
    payload. None when the payload cannot be read."""
    if hash_name == "agents":
        return field
    if hash_name == "balances":
        return field.partition(SEP)[0]
    try:
        doc = msgspec.json.decode(value)
        agent = doc[_NESTED[hash_name]]["agent_id"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return None
    return agent if isinstance(agent, str) else None


async def move_hash_fields(
    r: Any, src: Keys, dst_of: Callable[[str], Keys | None], names: Iterable[str] = AGENT_HASHES
) -> int:
    """Move every field of `src`'s live-view hashes whose agent another namespace owns
    (`dst_of(agent)` -> its Keys, None: stays) to that namespace's hash. Idempotent: the
    destination is written before the source field is deleted. Returns fields moved."""
    moved = 0
    for name in names:
        key = src.hash(name)
        async for raw_field, value in r.hscan_iter(key, count=SCAN_COUNT):
            field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
            agent = agent_of_field(name, field, value)
            dst = dst_of(agent) if agent is not None else None
            if dst is None:
                continue
            await r.hset(dst.hash(name), field, value)
            await r.hdel(key, field)
            moved += 1
    return moved
