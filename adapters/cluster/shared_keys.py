"""API keys shared by every process of a cluster (docs/cluster.md "API keys"): a key created or
revoked on one process — over the API or with `tradingd keys` on its data dir — authenticates,
or stops authenticating, on every other within about a second, the hot standby included, so a
client's key still works after a takeover and on every shard.

Each process keeps its keys in its own `keys.json` (adapters/http/auth.py: hashes only, never
a raw key) and mirrors them through the Redis hash `{<ns>}:api_keys` (key id -> the ApiKey as
JSON, its sha256 hash and scopes; a revoked one keeps `revoked_at`). Every `interval_s` it
publishes what it has that Redis lacks and takes what Redis has that it lacks. A revocation wins
over a live copy everywhere (in the publishing script and in KeyStore.merge), so a key once
revoked never comes back, whatever the order the processes see things in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from tradingd.adapters.cluster.intake_stream import IntakeKeys
from tradingd.adapters.http.auth import SCOPES, ApiKey, KeyStore
from tradingd.adapters.transient import REDIS_FAILURES, raise_if_cancelled

log = logging.getLogger("tradingd.cluster")

SYNC_INTERVAL_S = 1.0
REDIS_TIMEOUT_S = 2.0
MAX_KEYS = 10_000  # what one process takes from Redis at most (keys are made by admins)

# ARGV: key id, record JSON, "1" if the record is revoked. Writes when Redis has no record for
# the id (or an unreadable one), or has it live and this one is revoked; never replaces a
# revoked record.
PUBLISH = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' then
    if ARGV[3] ~= '1' then return 0 end
    local r = doc['revoked_at']
    if r ~= nil and r ~= cjson.null then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ApiKey)


def usable(field: str, value: bytes) -> ApiKey | None:
    """The key a record of the hash holds, or None when it is not one: unreadable, filed under
    another id, a hash that is not sha256 hex, or scopes that are not ours."""
    try:
        key = _decoder.decode(value)
    except msgspec.DecodeError:
        return None
    if key.id != field or len(key.hash) != 64 or not all(c in HEX for c in key.hash):
        return None
    if not key.scopes or not key.scopes <= SCOPES:
        return None
    return key


HEX = frozenset("0123456789abcdef")


class SharedKeys:
    """The mirror of one process's KeyStore in the cluster's Redis; `run` until cancelled."""

    def __init__(
        self,
        redis_url: str,
        base: str,
        keys: KeyStore,
        components: dict[str, Any] | None = None,
        on_first_sync: Callable[[], None] | None = None,
    ) -> None:
        self.redis_url = redis_url
        # called once the cluster's keys are first known here (the daemon's first admin key is
        # made then, and only if the cluster has no live key)
        self.on_first_sync = on_first_sync
        # GET /health components.api_keys: "ok", or "down" with the reason
        self.components = components if components is not None else {}
        self._skipped: set[str] = set()  # fields of unusable records, logged once each
        self.hash = IntakeKeys(base).tag + ":api_keys"
        self.keys = keys
        self.r: Any = None
        self._publish: Any = None
        self.published = 0  # records this process wrote to Redis
        self.taken = 0  # records it took from Redis
        self.ok = True
        self._poke = asyncio.Event()

    def poke(self) -> None:
        """Sync now (a key was created or revoked here)."""
        self._poke.set()

    async def sync_once(self) -> None:
        """Publish what this process has that Redis lacks, then take in what Redis has."""
        if self.r is None:
            from tradingd.adapters.store.redis import client

            self.r = client(self.redis_url, REDIS_TIMEOUT_S)
            self._publish = self.r.register_script(PUBLISH)
        mine = await asyncio.to_thread(self.keys.records)
        theirs = await self._remote()
        for key in mine:
            known = theirs.get(key.id)
            if known is None or (key.revoked_at is not None and known.revoked_at is None):
                revoked = "1" if key.revoked_at is not None else "0"
                args = [key.id, _encoder.encode(key), revoked]
                self.published += int(await self._publish(keys=[self.hash], args=args))
        self.taken += await asyncio.to_thread(self.keys.merge, list(theirs.values()))

    async def _remote(self) -> dict[str, ApiKey]:
        out: dict[str, ApiKey] = {}
        async for raw_field, value in self.r.hscan_iter(self.hash, count=500):
            if len(out) >= MAX_KEYS:
                log.warning("cluster: more shared API keys than %d; the rest ignored", MAX_KEYS)
                break
            field = (
                raw_field.decode(errors="replace") if isinstance(raw_field, bytes) else raw_field
            )
            key = usable(field, value)
            if key is None:
                if field not in self._skipped:
                    self._skipped.add(field)
                    log.warning(
                        "cluster: a shared API key record that is not one skipped",
                        extra={"field": field[:64]},
                    )
                continue
            out[key.id] = key
        return out

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
                if not self.ok:
                    log.info("cluster: API keys shared again")
                self.ok = True
                self.components["api_keys"] = {"status": "ok"}
                if self.on_first_sync is not None:
                    first, self.on_first_sync = self.on_first_sync, None
                    try:
                        await asyncio.to_thread(first)
                    except BaseException:
                        self.on_first_sync = first  # again after the next sync
                        raise
                    continue  # publish what it made at once
            except Exception as exc:  # Redis, or this process's key file: try again next turn
                raise_if_cancelled()
                if self.ok:
                    redis = isinstance(exc, REDIS_FAILURES)
                    log.log(
                        logging.WARNING if redis else logging.ERROR,
                        "cluster: API keys not shared: %s",
                        exc,
                        exc_info=not redis,
                    )
                self.ok = False
                self.components["api_keys"] = {"status": "down", "reason": str(exc)[:200]}
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), SYNC_INTERVAL_S)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self.r is not None:
            await self.r.aclose()
