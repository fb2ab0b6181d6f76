"""How tradingd's entries are laid out in Redis: the key names of a namespace, the stream entry's
fields (`t` type, `k` key, `a` agent, `e` payload) as XADDed and as read back, and which hash
each entry type writes. The write-through (redis.py), the write-behind (writer.py) and recovery
all encode and decode through here."""

from __future__ import annotations

from typing import Any

import msgspec
from tradingd.adapters.store.records import SEQ_BITS, SEQ_MASK, Entry, parse_stream_id, stream_id

# Which hash an entry type writes (True) or deletes from (False). The hash value is the entry's
# payload: it carries the whole entity (Position, Order, Agent...) and decodes as an AnyEntry.
HASH_WRITES: dict[str, tuple[str, bool]] = {
    "AgentSaved": ("agents", True),
    "AgentDeleted": ("agents", False),
    "BalanceChanged": ("balances", True),
    "PositionSaved": ("positions", True),
    "PositionOpened": ("positions", True),
    "PositionChanged": ("positions", True),
    "PositionClosed": ("positions", False),
    "PositionDropped": ("positions", False),
    "OrderSubmitted": ("orders", True),
    "SwapSubmitted": ("orders", True),
    "ExchangeOrderSent": ("orders", True),
    "OrderFilled": ("orders", False),
    "OrderFailed": ("orders", False),
    "EntryRested": ("entries", True),
    "EntryEnded": ("entries", False),
    "HaltChanged": ("meta", True),
    "PriceEvicted": ("prices", False),
}


def hash_tag(namespace: str) -> str:
    """The key prefix of a namespace, `{<namespace>}`: a Redis Cluster hash tag, so every key of
    one namespace (one process, or one agent shard) is in one hash slot and the scripts that
    touch several of them run unchanged on Redis Cluster; on one Redis it is only a name.
    Before 2026-12-01 keys were `<namespace>:...` (key_migration.py renames them)."""
    return "{" + namespace + "}"


class Keys:
    """The keys of one namespace: `{<ns>}:events` (the stream), `:meta`, `:prices`, the entity
    hashes (`hash(name)`), and the hot standby's `:lease` and `:fence`."""

    NAMES = ("events", "meta", "prices", "lease", "fence")

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.tag = tag = hash_tag(namespace)
        self.stream = f"{tag}:events"
        self.meta = f"{tag}:meta"
        self.prices = f"{tag}:prices"
        # hot standby (adapters/cluster): `<token>:<instance>` of the holder, and the counter
        self.lease = f"{tag}:lease"
        self.fence = f"{tag}:fence"

    def hash(self, name: str) -> str:
        return f"{self.tag}:{name}"

    def every_name(self) -> tuple[str, ...]:
        """The suffix of every key a namespace may hold."""
        return (*self.NAMES, *(n for n in WRITE_KEYS if n not in self.NAMES))


# The write-through as one server-side script per batch (EVALSHA): the entries go as ONE
# msgpack argument `[[stream id, type, key, agent, payload], ...]`, and Redis does each XADD and
# its hash write in order. Measured against a MULTI/EXEC pipeline of one XADD per entry plus
# HSET/HDEL per hash (benchmarks/write_through.py): redis-py packed every argument and parsed a
# QUEUED reply per command in Python, on the engine's event loop; the script packs one argument
# with msgspec and parses one reply. A script runs atomically, so the hashes are always exactly
# the state after the stream's last entry, as with MULTI/EXEC. KEYS: the stream, then the hashes
# in WRITE_KEYS order. ARGV: the batch, the meta hash's last_id and seq ("": leave each),
# the last prices as msgpack `[token, tick json, ...]`. Payloads travel as msgpack str: Redis
# 6.2's cmsgpack refuses the bin type (payloads are JSON, hence valid UTF-8).
# Fencing (hot standby, adapters/cluster): with ARGV[5] a fencing token and KEYS[9] the lease
# key, the script first checks that the lease is held under that token and refuses the whole
# batch otherwise (error "FENCED ..."): a process that lost its lease can never commit. One GET
# inside the call the batch makes anyway; without ARGV[5] (no cluster) nothing is checked.
FENCED = "FENCED"
WRITE_KEYS = ("meta", "prices", "agents", "balances", "positions", "orders", "entries")


def _lua_targets() -> str:
    rows = []
    for type_, (name, write) in sorted(HASH_WRITES.items()):
        rows.append(f"{type_}={{{WRITE_KEYS.index(name) + 2},{1 if write else 0}}}")
    return "{" + ",".join(rows) + "}"


WRITE_SCRIPT = (
    """
local targets = """
    + _lua_targets()
    + """
local stream = KEYS[1]
if ARGV[5] and ARGV[5] ~= '' then
  local holder = redis.call('GET', KEYS[9])
  if not holder or string.sub(holder, 1, #ARGV[5] + 1) ~= ARGV[5] .. ':' then
    return redis.error_reply('"""
    + FENCED
    + """ token ' .. ARGV[5] .. ' does not hold the lease')
  end
end
local batch = cmsgpack.unpack(ARGV[1])
for i = 1, #batch do
  local e = batch[i]
  redis.call('XADD', stream, e[1], 't', e[2], 'k', e[3], 'a', e[4], 'e', e[5])
  local target = targets[e[2]]
  if target then
    if target[2] == 1 then
      redis.call('HSET', KEYS[target[1]], e[3], e[5])
    else
      redis.call('HDEL', KEYS[target[1]], e[3])
    end
  end
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], 'last_id', ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], 'seq', ARGV[3])
end
local prices = cmsgpack.unpack(ARGV[4])
for i = 1, #prices, 2 do
  redis.call('HSET', KEYS[3], prices[i], prices[i + 1])
end
return #batch
"""
)
_pack = msgspec.msgpack.Encoder().encode


def write_keys(keys: Keys) -> list[str]:
    """The script's KEYS for a namespace."""
    return [keys.stream, *(keys.hash(name) for name in WRITE_KEYS)]


def write_args(
    entries: list[Entry],
    seq: int | None,
    prices: dict[str, bytes] | None = None,
    fence_token: str = "",
) -> list[bytes | str | int]:
    """The script's ARGV for `entries` (in stream order), the engine's id seq to record with
    them (None: leave it), last prices (token -> tick JSON) and the fencing token ("": no
    check; otherwise KEYS must end with the lease key)."""
    batch = [(stream_id(e.id), e.type, e.key, e.agent, e.payload.decode()) for e in entries]
    last = str(entries[-1].id) if entries else ""
    flat: list[str] = []
    for token, tick in (prices or {}).items():
        flat += (token, tick.decode())
    args: list[bytes | str | int] = [_pack(batch), last, "" if seq is None else seq, _pack(flat)]
    if fence_token:
        args.append(fence_token)
    return args


# The write-behind's acknowledgement of a batch as one script call: XACK of its entries, then
# XTRIM of every entry the group has delivered and no consumer still holds: below the oldest
# pending entry when one is (every older entry was delivered, in order, and is no longer
# pending: acknowledged), else up to the group's last delivered id. So a reclaimed batch of a
# dead consumer's older entries, acknowledged after newer ones, leaves no acknowledged entry
# behind (it did: the lag /health shows then stayed up on an idle daemon). The ids travel as runs
# `[ms, first seq, count]` in one msgpack argument, expanded in Redis: redis-py packs each
# argument of a command in Python, and acknowledging a 5,000-entry batch as XACK <5,000 ids>
# cost the engine's event loop 11-15 ms on a slow day (benchmarks/stream_ack.py: 2.2 ms this
# way). KEYS: the stream. ARGV: the group, the runs.
ACK_SCRIPT = """
local runs = cmsgpack.unpack(ARGV[2])
local acked, ids = 0, {}
for i = 1, #runs do
  local ms, first, count = runs[i][1], runs[i][2], runs[i][3]
  for n = first, first + count - 1 do
    ids[#ids + 1] = ms .. '-' .. string.format('%d', n)
    if #ids == 1000 then
      acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
      ids = {}
    end
  end
end
if #ids > 0 then
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', pending[2])
  return acked
end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for k = 1, #group, 2 do
    if group[k] == 'name' then name = group[k + 1] end
    if group[k] == 'last-delivered-id' then last = group[k + 1] end
  end
  if name == ARGV[1] and last then
    local dash = string.find(last, '-', 1, true)
    local seq = tonumber(string.sub(last, dash + 1))
    redis.call('XTRIM', KEYS[1], 'MINID', string.sub(last, 1, dash) .. string.format('%d', seq + 1))
  end
end
return acked
"""


def ack_args(group: str, batch: list[Entry]) -> list[str | bytes]:
    """ACK_SCRIPT's ARGV for `batch`: the group, and the batch's ids as runs of consecutive ids
    within one ms (an encode of one flush takes one block of ids, so a batch is a few runs)."""
    runs: list[list[Any]] = []
    prev = -2
    for e in batch:
        i = e.id
        if i == prev + 1 and i & SEQ_MASK:
            runs[-1][2] += 1
        else:
            runs.append([str(i >> SEQ_BITS), i & SEQ_MASK, 1])
        prev = i
    return [group, _pack(runs)]


def entries_from_reply(messages: list[Any]) -> list[Entry]:
    """Entries of a raw (unparsed RESP2) XREADGROUP/XRANGE reply: `[[sid, [b"t", type, b"k",
    key, b"a", agent, b"e", payload]], ...]`. Fields come back in the order WRITE_SCRIPT wrote
    them, which is read positionally; anything else goes through the general path. Entries
    deleted while pending come back without fields and are skipped."""
    out: list[Entry] = []
    append = out.append
    types = _TYPE_NAMES
    for sid, f in messages:
        if not f:
            continue
        if len(f) == 8 and f[0] == b"t" and f[2] == b"k" and f[4] == b"a" and f[6] == b"e":
            raw_type = f[1]
            type_ = types.get(raw_type)
            if type_ is None:
                type_ = types[raw_type] = raw_type.decode()
            ms, _, n = sid.partition(b"-")
            append(
                Entry(int(ms) << SEQ_BITS | int(n or 0), type_, f[3].decode(), f[5].decode(), f[7])
            )
        else:
            append(entry_from_fields(sid, dict(zip(f[::2], f[1::2], strict=False))))
    return out


_TYPE_NAMES: dict[bytes, str] = {}  # entry type names, decoded once


def entry_from_fields(sid: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(
        parse_stream_id(sid),
        fields[b"t"].decode(),
        fields[b"k"].decode(),
        fields[b"a"].decode(),
        fields[b"e"],
    )
