"""How tradingd's entries are laid out in Redis: the key names of a namespace, the stream entry's
fields (`t` type, `k` key, `a` agent, `e` payload) as XADDed and as read back, and which hash
each entry type writes. The write-through (redis.py), the write-behind (writer.py) and recovery
all encode and decode through here."""

from __future__ import annotations

from typing import Any

from tradingd.adapters.store.records import SEQ_BITS, Entry, parse_stream_id

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


class Keys:
    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.stream = f"{namespace}:events"
        self.meta = f"{namespace}:meta"
        self.prices = f"{namespace}:prices"

    def hash(self, name: str) -> str:
        return f"{self.ns}:{name}"


def hash_ops(entries: list[Entry], keys: Keys) -> dict[str, dict[str, bytes | None]]:
    """Per hash, the newest value (or None: delete) of each field the entries change."""
    ops: dict[str, dict[str, bytes | None]] = {}
    for e in entries:
        target = HASH_WRITES.get(e.type)
        if target is not None:
            name, write = target
            ops.setdefault(keys.hash(name), {})[e.key] = e.payload if write else None
    return ops


def queue_hash_ops(pipe: Any, ops: dict[str, dict[str, bytes | None]]) -> None:
    for key, fields in ops.items():
        sets = {f: v for f, v in fields.items() if v is not None}
        dels = [f for f, v in fields.items() if v is None]
        if sets:
            pipe.hset(key, mapping=sets)
        if dels:
            pipe.hdel(key, *dels)


def queue_entries(pipe: Any, entries: list[Entry], keys: Keys) -> None:
    xadd = pipe.xadd
    stream = keys.stream
    for e in entries:
        xadd(stream, {"t": e.type, "k": e.key, "a": e.agent, "e": e.payload}, id=e.stream_id)
    queue_hash_ops(pipe, hash_ops(entries, keys))


def entries_from_reply(messages: list[Any]) -> list[Entry]:
    """Entries of a raw (unparsed RESP2) XREADGROUP/XRANGE reply: `[[sid, [b"t", type, b"k",
    key, b"a", agent, b"e", payload]], ...]`. Fields come back in the order `queue_entries` wrote
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
