"""Atomic amounts in a TOML config may be integers (`paper_deposit = 50000000000`) as well as the
decimal strings of the JSON API. This is the TOML edge: integers become those strings before the
one schema decodes the file, so the API contract (strings only) stays as it is, and a bad amount
is refused here with one message, naming its key.

Which keys are amounts is read from the schema itself: a field marked `description="atomic
units"` (engine.config.Atomic, AgentSpec.paper_deposit)."""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec.inspect as mi
from tradingd.engine.config import MAX_ATOMIC, AgentConfig

AMOUNT_RULE = "amounts are atomic units, a string or an integer"
ATOMIC_DESCRIPTION = "atomic units"

# A schema tree: a compiled pattern at an amount, a dict of field name -> subtree for a table,
# {"[]": subtree} for an array of them.
_Tree = re.Pattern[str] | dict[str, Any]


def _tree(t: mi.Type) -> _Tree | None:
    if isinstance(t, mi.Metadata):
        described = (t.extra_json_schema or {}).get("description") == ATOMIC_DESCRIPTION
        if described and isinstance(t.type, mi.StrType) and t.type.pattern:
            return re.compile(t.type.pattern)
        return _tree(t.type)
    if isinstance(t, mi.UnionType):
        found = [sub for sub in map(_tree, t.types) if sub is not None]
        return found[0] if found else None
    if isinstance(t, mi.ListType):
        item = _tree(t.item_type)
        return None if item is None else {"[]": item}
    if isinstance(t, mi.StructType):
        fields = {f.encode_name: _tree(f.type) for f in t.fields}
        return {name: sub for name, sub in fields.items() if sub is not None} or None
    return None


@functools.cache
def _schema_trees() -> tuple[_Tree, _Tree]:
    from tradingd.adapters.app.settings import Settings

    settings, config = _tree(mi.type_info(Settings)), _tree(mi.type_info(AgentConfig))
    assert settings is not None and config is not None
    return settings, config


class AmountError(ValueError):
    def __init__(self, path: str, value: object) -> None:
        super().__init__(
            f'{AMOUNT_RULE} (e.g. 100000000 or "100000000", at most {MAX_ATOMIC}), got {value!r}'
        )
        self.path = path


def _amount(value: object, pattern: re.Pattern[str], path: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        text = str(value)
    elif isinstance(value, str) and pattern.fullmatch(value):
        text = value
    else:
        raise AmountError(path, value)
    if int(text) > MAX_ATOMIC:
        raise AmountError(path, value)
    return text


def _convert(obj: Any, tree: _Tree, path: str) -> Any:
    if isinstance(tree, re.Pattern):
        return _amount(obj, tree, path)
    if "[]" in tree and isinstance(obj, list):
        return [_convert(item, tree["[]"], f"{path}[{i}]") for i, item in enumerate(obj)]
    if isinstance(obj, dict):
        return {
            key: _convert(value, tree[key], f"{path}.{key}") if key in tree else value
            for key, value in obj.items()
        }
    return obj  # the wrong shape: the schema says so when it decodes


def _agent_path(index: int, spec: object) -> str:
    agent_id = spec.get("id") if isinstance(spec, dict) else None
    return f"$.agents[id={agent_id}]" if isinstance(agent_id, str) else f"$.agents[{index}]"


def amounts_as_strings(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (a decoded TOML document) with every integer amount as its decimal string.
    Raises AmountError (with `.path`, agents named by id) for a value that is no amount."""
    settings_tree, config_tree = _schema_trees()
    agents = raw.get("agents")
    if not isinstance(agents, list):
        return raw
    converted = []
    for i, spec in enumerate(agents):
        at = _agent_path(i, spec)
        if isinstance(spec, dict):
            agent_tree = settings_tree["agents"]["[]"]
            spec = _convert(spec, agent_tree, at)
            if isinstance(spec.get("config"), dict):
                spec = {**spec, "config": _convert(spec["config"], config_tree, f"{at}.config")}
        converted.append(spec)
    return {**raw, "agents": converted}
