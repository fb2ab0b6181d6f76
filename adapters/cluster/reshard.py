"""`tradingd cluster reshard --shards M`: change a stopped cluster's shard count (docs/cluster.md
"Changing the shard count"). An agent belongs to shard sha256(id) mod the count (shards.owner),
so a new count moves agents: this moves each one's whole state to its new shard's namespace.

Steps, each safe to run again after a crash (the run finds what is left and finishes it):
1. take the lease of every namespace involved (old and new shards): refused while any shard or
   standby holds one, and no shard can start (it waits as a standby) until the run ends; taking
   a lease bumps its fencing counter, so a stale process can commit nothing;
2. refuse while an old shard's consumer group has signals it has not applied (a signal accepted
   must be applied by the shard that owned its agents when it was accepted);
3. drain every old shard's write-through stream into Postgres (its write-behind, run here),
   then record the count as `resharding:N:M`: no process starts until a run finishes;
4. migrate the new shards' schemas, then move every misplaced agent's rows in ONE Postgres
   transaction (agent_moves.move_rows): all agents move or none;
5. move the live-view hash fields that name moved agents, rebuild the moved-positions map (a
   position id names the shard that opened it; GET /v1/positions/{id} looks moves up there),
   record the new count, and drop what removed shards left in the shared keys.

Ticks the old shards had not read are not carried over: the new shards start at the tick
streams' end and price from the next tick (as after a takeover)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tradingd.adapters.cluster.agent_moves import (
    agent_schemas,
    agents_in,
    move_hash_fields,
    move_rows,
    quoted,
)
from tradingd.adapters.cluster.intake_stream import STREAMS, IntakeKeys, consumer_groups
from tradingd.adapters.cluster.shards import (
    MAX_SHARDS,
    RESHARDING,
    owner,
    recorded_count,
    shard_namespace,
    shard_of_id,
)
from tradingd.adapters.store.stream_codec import Keys
from tradingd.adapters.transient import REDIS_FAILURES

LEASE_MS = 10_000
DRAIN_TIMEOUT_S = 120.0
MOVED_CHUNK = 1000
LIVE_IDLE_MS = 5_000  # a write-behind that read its stream this recently is running


def _highest(namespaces: list[str]) -> int:
    """The highest shard index among `<base>_s<i>` namespaces (-1: none)."""
    found = [int(ns.rpartition("_s")[2]) for ns in namespaces if ns.rpartition("_s")[2].isdigit()]
    return max(found, default=-1)


class StoreUnreachable(Exception):
    """Redis or Postgres could not be reached; the message names which."""


class ReshardRefused(Exception):
    """The cluster is not in a state to be resharded (a shard running, signals unapplied, a
    stream not drained); the message says what to do. Nothing was changed."""


class Reshard:
    """One run of the procedure from `shards_from` (the count recorded in Redis; 1: a single
    process on the base namespace) to `shards_to` shards, on one Redis and one Postgres."""

    def __init__(self, redis_url: str, database_url: str, base: str, shards_to: int) -> None:
        if not 2 <= shards_to <= MAX_SHARDS:
            raise ReshardRefused(f"--shards {shards_to}: 2..{MAX_SHARDS}")
        self.redis_url = redis_url
        self.database_url = database_url
        self.base = base
        self.to = shards_to
        self.intake = IntakeKeys(base)
        self.r: Any = None
        self.leases: list[Any] = []
        self.report: dict[str, Any] = {"namespace": base, "shards_to": shards_to}

    # -- the run ----------------------------------------------------------------------------

    async def run(self, dry_run: bool = False, say: Any = print) -> dict[str, Any]:
        from tradingd.adapters.store.redis import client

        self.r = client(self.redis_url, 10.0)
        renewing: asyncio.Task[None] | None = None
        try:
            recorded = await self.r.get(self.intake.count)
            known, interrupted = recorded_count(recorded)
            self.report["shards_from"] = known
            new = [shard_namespace(self.base, j, self.to) for j in range(self.to)]
            schemas = await self._pg(agent_schemas, self.base)
            await self._refuse_another_store(known, interrupted, schemas)
            # Every namespace that may hold agents: the recorded count's, and every schema of
            # the cluster (an interrupted run may have moved them to another count's).
            old = sorted(
                {shard_namespace(self.base, i, known) for i in range(known)} | set(schemas)
            )
            await self._take_leases(list(dict.fromkeys(old + new)))
            if interrupted is not None:
                say(f"finishing an interrupted reshard from {known} to {interrupted} shards")
            for ns in old:
                await self._refuse_if_written(ns)
            renewing = asyncio.create_task(self._renew())
            await self._check_intake(known)
            if not dry_run:  # the plan reads Postgres: what the streams hold goes there first
                for ns in old:
                    await self._drain(ns, say)
            plan = await self._plan(old)
            self.report["moves"] = {f"{s} -> {d}": len(a) for (s, d), a in sorted(plan.items())}
            self.report["agents_moving"] = sum(len(a) for a in plan.values())
            say(f"{self.report['agents_moving']} agent(s) move: {self.report['moves'] or 'none'}")
            if dry_run:  # (agents only in a stream not yet drained are not counted)
                return self.report
            await self._refuse_conflicts(plan)
            self._still_holding()
            # From here until the end no shard may start with either count: a crash leaves
            # this marker, and only a run of this command clears it.
            await self.r.set(self.intake.count, f"{RESHARDING}:{known}:{self.to}")
            try:
                await self._move_rows(new, plan, say)
            except ReshardRefused:  # rolled back: nothing moved, the count is as it was
                if recorded is None:
                    await self.r.delete(self.intake.count)
                else:
                    await self.r.set(self.intake.count, recorded)
                raise
            await self._fix_redis(old, new, max(known, _highest(old) + 1))
            say(f"the cluster now counts {self.to} shards")
            return self.report
        finally:
            if renewing is not None:
                renewing.cancel()
            for lease in self.leases:
                try:
                    await lease.release()
                except Exception:  # the lease lapses on its own
                    pass
            await self.r.aclose()

    async def _refuse_another_store(
        self, known: int, interrupted: int | None, schemas: list[str]
    ) -> None:
        """Redis and Postgres must be the same cluster's (a tester pointed one URL elsewhere:
        rows moved under running shards, or a count recorded over an empty database). Refused
        when Postgres holds agents where the recorded count puts none, or when a namespace
        Redis knows (its stream or fencing counter) has no schema in Postgres."""
        layout = {shard_namespace(self.base, i, known) for i in range(known)}
        if interrupted is not None:
            layout |= {shard_namespace(self.base, j, interrupted) for j in range(interrupted)}

        async def agents_outside(conn: Any) -> list[str]:
            return [ns for ns in schemas if ns not in layout and await agents_in(conn, ns)]

        outside = await self._pg(agents_outside)
        if outside:
            raise ReshardRefused(
                f"Postgres holds agents under {', '.join(outside[:3])}, where this Redis records "
                f"no shard ({known} shard(s) recorded): is REDIS_URL the cluster's? nothing "
                "was changed"
            )
        for ns in sorted(layout):
            keys = Keys(ns)
            if ns not in schemas and await self.r.exists(keys.stream, keys.fence):
                raise ReshardRefused(
                    f"Redis records {ns}, but this Postgres has no schema {ns}: is DATABASE_URL "
                    "the cluster's? nothing was changed"
                )

    async def _pg(self, fn: Any, *args: Any) -> Any:
        """`fn(conn, *args)` on a connection of its own. Raises StoreUnreachable."""
        import asyncpg
        from tradingd.adapters.store import postgres as pg

        try:
            conn = await pg.connect(self.database_url, "public", timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreUnreachable(f"cannot reach postgres: {exc}") from exc
        try:
            return await fn(conn, *args)
        finally:
            await conn.close()

    async def _take_leases(self, namespaces: list[str]) -> None:
        from tradingd.adapters.cluster.lease import Lease

        instance = f"reshard-{os.getpid()}"
        for ns in namespaces:
            lease = Lease(self.r, ns, instance, LEASE_MS)
            if not await lease.try_acquire():
                holder = await lease.holder() or ""
                if holder.partition(":")[2].startswith("reshard-"):
                    raise ReshardRefused(
                        f"the lease of {ns} is held by another reshard ({holder}): wait for it; "
                        f"a reshard that was killed lets go within {LEASE_MS // 1000} s, then "
                        f"run this again to finish its work"
                    )
                raise ReshardRefused(
                    f"the lease of {ns} is held ({holder}): stop every shard and standby of "
                    f"the cluster first"
                )
            self.leases.append(lease)

    async def _refuse_if_written(self, ns: str) -> None:
        """A process without a lease (a plain single process) is seen by its write-behind: a
        running one reads its stream at least every second (BLOCK 1000 ms)."""
        from redis.exceptions import ResponseError
        from tradingd.adapters.store.writer import WriteBehind

        try:
            consumers = await self.r.xinfo_consumers(Keys(ns).stream, WriteBehind.GROUP)
        except ResponseError:  # no stream or no group: nothing ever wrote here
            return
        for c in consumers:
            name = c["name"].decode() if isinstance(c["name"], bytes) else str(c["name"])
            if int(c.get("idle", LIVE_IDLE_MS)) < LIVE_IDLE_MS and not name.startswith("reshard-"):
                raise ReshardRefused(
                    f"a process is writing {ns} (its write-behind {name!r} read the stream "
                    f"{c['idle']} ms ago): stop it first"
                )

    async def _renew(self) -> None:
        """Every lease_ms/3; a lease not renewed (lost, or Redis failing) is noted, and the run
        stops before it records or moves anything (`_still_holding`)."""
        while True:
            await asyncio.sleep(LEASE_MS / 3000)
            for lease in self.leases:
                try:
                    await lease.renew()
                except REDIS_FAILURES:
                    pass  # `held()` by our own clock decides

    def _still_holding(self) -> None:
        lost = [lease.keys.ns for lease in self.leases if not lease.held()]
        if lost:
            raise ReshardRefused(
                f"the lease of {', '.join(lost[:3])} was not renewed in time (Redis slow or "
                "down?): nothing was moved; run this again"
            )

    async def _check_intake(self, known: int) -> None:
        """Refuse while an old shard has signals delivered to the intake it has not applied."""
        if known <= 1:
            return
        stream = self.intake.stream("signals")
        last = int(await self.r.get(self.intake.stream_seq("signals")) or 0)
        for name, g in (await consumer_groups(self.r, stream, last)).items():
            if not name.startswith("s") or not name[1:].isdigit():
                continue
            if (g["lag"] or 0) > 0 or int(g["pending"] or 0):
                raise ReshardRefused(
                    f"shard {name[1:]} has not applied every signal (lag {g['lag']}, pending "
                    f"{g['pending']}): start it alone until `tradingd cluster status` shows "
                    f"its signals lag and pending at 0, stop it, and run this again"
                )

    async def _plan(self, old: list[str]) -> dict[tuple[str, str], list[str]]:
        """(from namespace, to namespace) -> the agents that move."""

        async def plan(conn: Any) -> dict[tuple[str, str], list[str]]:
            out: dict[tuple[str, str], list[str]] = {}
            for ns in old:
                for agent_id in await agents_in(conn, ns):
                    dst = shard_namespace(self.base, owner(agent_id, self.to), self.to)
                    if dst != ns:
                        out.setdefault((ns, dst), []).append(agent_id)
            return out

        return await self._pg(plan)  # type: ignore[no-any-return]

    async def _refuse_conflicts(self, plan: dict[tuple[str, str], list[str]]) -> None:
        """Before anything is recorded: an agent whose id its new schema already holds would
        stop the move; refused now, with nothing changed."""

        async def clashes(conn: Any) -> list[str]:
            out = []
            for (src, dst), agents in sorted(plan.items()):
                table = f"{quoted(dst)}.agents"
                if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                    continue  # a new shard's schema, made by the move
                rows = await conn.fetch(f"SELECT id FROM {table} WHERE id = ANY($1)", agents)
                out += [f"{r['id']} ({src} and {dst})" for r in rows]
            return out

        found = await self._pg(clashes)
        if found:
            raise ReshardRefused(
                f"{len(found)} agent(s) are in two schemas: {', '.join(found[:5])}; nothing was "
                "changed. One of each pair is stale (a shard that ran with another count): "
                'see docs/cluster.md "Changing the shard count"'
            )

    async def _drain(self, ns: str, say: Any) -> None:
        """Write what `ns`'s stream holds into Postgres with its write-behind, run here."""
        from tradingd.adapters.store.writer import WriteBehind

        keys = Keys(ns)
        if not await self.r.xlen(keys.stream):
            return
        writer = WriteBehind(
            self.r,
            keys,
            self.database_url,
            ns,
            on_status=lambda up, why: None,
            claim_idle_ms=0,
            consumer=f"reshard-{os.getpid()}",
        )
        await writer.ensure_group()
        task = asyncio.create_task(writer.run())
        try:
            drained = await writer.drain(DRAIN_TIMEOUT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await writer.close()
        if not drained:
            raise ReshardRefused(
                f"{ns}: the write-through stream did not drain into Postgres within "
                f"{DRAIN_TIMEOUT_S:.0f} s ({writer.reason or 'see the log'}); nothing was moved"
            )
        say(f"{ns}: stream drained into Postgres ({writer.written} entries)")

    async def _move_rows(
        self, new: list[str], plan: dict[tuple[str, str], list[str]], say: Any
    ) -> None:
        import asyncpg
        from tradingd.adapters.store import postgres as pg

        for ns in new:
            try:
                await pg.migrate(self.database_url, ns)
            except (OSError, asyncpg.PostgresError) as exc:
                raise StoreUnreachable(f"cannot migrate postgres schema {ns}: {exc}") from exc
        if not plan:
            return

        async def move_all(conn: Any) -> None:
            async with conn.transaction():
                for (src, dst), agents in sorted(plan.items()):
                    moved = await move_rows(conn, src, dst, agents)
                    say(f"{src} -> {dst}: {len(agents)} agent(s), rows {moved}")

        try:
            await self._pg(move_all)
            say("rows moved: committed")
        except asyncpg.UniqueViolationError as exc:
            raise ReshardRefused(
                f"a moving agent's row is already in its new shard's schema ({exc.detail or exc}):"
                " nothing was moved; the cluster's schemas hold one agent twice (a shard ran "
                'with another count?): see docs/cluster.md "Changing the shard count"'
            ) from None

    async def _fix_redis(self, old: list[str], new: list[str], highest: int) -> None:
        """The live view, the positions map, the count; what shards >= the new count left."""

        def dst_of(ns: str) -> Any:
            def owner_keys(agent_id: str) -> Keys | None:
                dst = shard_namespace(self.base, owner(agent_id, self.to), self.to)
                return None if dst == ns else Keys(dst)

            return owner_keys

        fields = 0
        for ns in old:
            fields += await move_hash_fields(self.r, Keys(ns), dst_of(ns))
        self.report["redis_fields_moved"] = fields
        self.report["positions_mapped"] = await self._map_moved_positions(new)
        await self.r.set(self.intake.count, self.to)
        for i in range(self.to, highest):  # shards removed by a smaller count
            await self.r.hdel(self.intake.shards, str(i))
            await self.r.delete(self.intake.feed_watched(i))
            for name in STREAMS:
                try:
                    await self.r.xgroup_destroy(self.intake.stream(name), f"s{i}")
                except Exception as exc:  # no such stream or group
                    if "NOGROUP" not in str(exc) and "no such key" not in str(exc).lower():
                        raise

    async def _map_moved_positions(self, new: list[str]) -> int:
        """Rebuild `{<base>}:moved_positions` (position id -> shard) from every position whose
        id does not name the shard that holds it now; replaced whole (RENAME)."""
        key = self.intake.moved_positions
        building = key + ":building"
        await self.r.delete(building)

        async def build(conn: Any) -> int:
            mapped = 0
            for shard, ns in enumerate(new):
                exists = await conn.fetchval(
                    "SELECT to_regclass($1) IS NOT NULL", f"{quoted(ns)}.positions"
                )
                if not exists:
                    continue
                batch: dict[str, int] = {}
                async with conn.transaction():
                    async for row in conn.cursor(f"SELECT id FROM {quoted(ns)}.positions"):
                        if shard_of_id(row["id"], self.to) != shard:
                            batch[row["id"]] = shard
                        if len(batch) >= MOVED_CHUNK:
                            await self.r.hset(building, mapping=batch)
                            mapped += len(batch)
                            batch = {}
                if batch:
                    await self.r.hset(building, mapping=batch)
                    mapped += len(batch)
            return mapped

        mapped: int = await self._pg(build)
        if mapped:
            await self.r.rename(building, key)
        else:
            await self.r.delete(key)
        return mapped
