"""What msgspec's typed decode does not check in a request body: duplicate object keys (msgspec
keeps the last, so `{"amount":"1","amount":"5"}` would deposit 5) and control characters in
text (adapters/http/text_rule.py). Both are refused with 422 naming the path.

Cost is paid in full only when needed. A JSON text without a backslash holds no escape, so its
strings decode to exactly their raw bytes and it cannot carry a C0 control character (raw ones
are malformed JSON); then every `:` outside a string separates one member, and re-encoding the
decoded value (where duplicates have collapsed) shows the same number of `:` exactly when no
object had a duplicate key. Bodies with a backslash or a DEL byte, or that fail that count, take
the slow path: the stdlib parser with a pairs hook, which finds the path. Measured with timeit
on a 217-byte signal body (shared 2-core machine): typed decode 1.1 µs, this check 5 µs on the
fast path, 56 µs with an escape in the text; a bare POST round trip is ~200 µs."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from tradingd.adapters.http.text_rule import MESSAGE as CONTROL_MESSAGE
from tradingd.adapters.http.text_rule import find_control_text
from tradingd.engine.errors import ValidationError

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers its first duplicate key."""

    duplicate: str | None = None


def _from_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.duplicate = key
                break
            seen.add(key)
    return obj


def _find_duplicate(obj: Any, path: str) -> str | None:
    if isinstance(obj, _Object):
        if obj.duplicate is not None:
            if find_control_text(obj.duplicate) is not None:
                return path  # never echo a control character in the path
            return f"{path}.{obj.duplicate}"
        for key, value in obj.items():
            found = _find_duplicate(value, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _find_duplicate(value, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def check_body(raw: bytes) -> None:
    """Raise ValidationError (422, `details.path`) for the first duplicate key or control
    character in `raw`, which must already have decoded as JSON. Fast path (no backslash):
    one untyped decode and one encode, both in C."""
    if b"\\" not in raw and b"\x7f" not in raw:
        if raw.count(b":") == _encode(_decode(raw)).count(b":"):
            return
    doc = json.loads(raw, object_pairs_hook=_from_pairs)
    duplicate = _find_duplicate(doc, "$")
    if duplicate is not None:
        raise ValidationError("duplicate key in a JSON object", duplicate)
    control = find_control_text(doc)
    if control is not None:
        raise ValidationError(CONTROL_MESSAGE, control)
