"""The lease in Redis that makes one process the active one.

`<namespace>:lease` holds `<fencing token>:<instance id>` with a TTL of lease_ms. It is taken with
SET NX PX, and the fencing token is `INCR <namespace>:fence` on every acquisition (monotonic
across takeovers); both happen in one script so a token is never spent on a failed take. Only the
holder renews (compare, then PEXPIRE) or releases (compare, then DEL). The holder also keeps its
own view of the expiry by the monotonic clock, from when the renewal was *sent*: a process that
was paused past it knows before it asks Redis anything that it must not act until Redis confirms
the lease (renewed, or taken again while the fence counter still holds its token: nobody else
took it since)."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from tradingd.adapters.store.stream_codec import Keys

ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return token
"""
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# The holder's lease expired in Redis while it stalled: take it again, with the same value and
# token, only if nobody took it since (every take INCRs the fence) and nobody holds it now.
RETAKE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
    return 1
  end
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(
        self,
        r: aioredis.Redis,
        namespace: str,
        instance: str,
        lease_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = r
        self.keys = Keys(namespace)
        self.instance = instance
        self.lease_ms = lease_ms
        self.clock = clock
        self.token = 0  # the fencing token of the lease this process holds (0: none yet)
        self.value = ""  # "<token>:<instance>" while held
        self.valid_until = 0.0  # monotonic: the lease is ours until then, by our own clock
        self._acquire = r.register_script(ACQUIRE)
        self._renew = r.register_script(RENEW)
        self._retake = r.register_script(RETAKE)
        self._release = r.register_script(RELEASE)

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True with a new fencing token if taken."""
        sent = self.clock()
        token = int(
            await self._acquire(
                keys=[self.keys.lease, self.keys.fence], args=[self.instance, self.lease_ms]
            )
        )
        if not token:
            return False
        self.token = token
        self.value = f"{token}:{self.instance}"
        self.valid_until = sent + self.lease_ms / 1000
        return True

    async def renew(self) -> bool:
        """Extend the lease if this process still holds it; False if it is gone or another's
        (raises on a Redis error: the caller's own clock decides then)."""
        if not self.value:
            return False
        sent = self.clock()
        ok = int(await self._renew(keys=[self.keys.lease], args=[self.value, self.lease_ms]))
        if ok:
            self.valid_until = sent + self.lease_ms / 1000
        return bool(ok)

    async def retake(self) -> bool:
        """Take the lease again with the same token after it expired in Redis, if no other
        process took it since (the fence counter is still this token) and none holds it now."""
        if not self.value:
            return False
        sent = self.clock()
        ok = int(
            await self._retake(
                keys=[self.keys.lease, self.keys.fence],
                args=[self.token, self.value, self.lease_ms],
            )
        )
        if ok:
            self.valid_until = sent + self.lease_ms / 1000
        return bool(ok)

    async def release(self) -> bool:
        """Give the lease up (a clean shutdown: the standby need not wait for it to lapse)."""
        if not self.value:
            return False
        value, self.value, self.valid_until = self.value, "", 0.0
        return bool(int(await self._release(keys=[self.keys.lease], args=[value])))

    def held(self) -> bool:
        """Held by this process's own clock: acquired or renewed less than lease_ms ago."""
        return bool(self.value) and self.clock() < self.valid_until

    def expires_in_ms(self) -> int:
        return max(0, int((self.valid_until - self.clock()) * 1000)) if self.value else 0

    async def holder(self) -> str | None:
        raw = await self.redis.get(self.keys.lease)
        return None if raw is None else raw.decode(errors="replace")
