"""What `check-config` and `run` both refuse before anything starts, in one message format:
`<file>: <key path>: <reason>`, agents named by id, e.g.
`x.toml: agents[id=alpha].config.stop_loss.trail_pct: Expected `float`, got `str``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
from tradingd.adapters.venues import BUILT_VENUES, check_agent_venue
from tradingd.engine.assets import KNOWN_DECIMALS, normalize_quote, quote_mint, require_mint
from tradingd.engine.config import config_from_builtins
from tradingd.engine.errors import ValidationError

if TYPE_CHECKING:
    from tradingd.adapters.app.settings import Settings

_AGENT_INDEX = re.compile(r"^\$\.agents\[(\d+)\]")
_MSGSPEC_AT = " - at `"


def config_error(where: str, path: str, reason: str) -> ValidationError:
    """`where` names the file (as given) or the built-in profile; `path` is `$.a.b`."""
    key = path.removeprefix("$").removeprefix(".")
    return ValidationError(f"{where}: {key}: {reason}" if key else f"{where}: {reason}", path)


def decode_error(where: str, exc: msgspec.ValidationError, raw: dict[str, Any]) -> ValidationError:
    """A msgspec error on the whole file, with `agents[N]` renamed `agents[id=...]`."""
    reason, at, path = str(exc).rpartition(_MSGSPEC_AT)
    if not at:
        return config_error(where, "$", path)
    return config_error(where, _agent_by_id(path.rstrip("`"), raw.get("agents")), reason)


def _agent_by_id(path: str, agents: object) -> str:
    match = _AGENT_INDEX.match(path)
    if match and isinstance(agents, list) and int(match[1]) < len(agents):
        spec = agents[int(match[1])]
        if isinstance(spec, dict) and isinstance(spec.get("id"), str):
            return f"$.agents[id={spec['id']}]" + path[match.end() :]
    return path


def check_settings(settings: Settings, where: str) -> None:
    """Rules across keys (and the environment) that the schema cannot say. Raises
    ValidationError with a one-line `config_error` message."""
    store = settings.store
    if store.kind == "external" and not (store.redis_url and store.database_url):
        missing = [
            f"{env} (or [store] {key})"
            for env, key, url in (
                ("REDIS_URL", "redis_url", store.redis_url),
                ("DATABASE_URL", "database_url", store.database_url),
            )
            if not url
        ]
        raise config_error(
            where,
            "$.store.kind",
            f"an external store needs both servers; {' and '.join(missing)} not set "
            '(kind = "embedded", the default, starts private ones)',
        )
    seen: set[str] = set()
    for spec in settings.agents:
        at = f"$.agents[id={spec.id}]"
        if spec.id in seen:
            raise config_error(where, f"{at}.id", f"duplicate agent id {spec.id!r}")
        seen.add(spec.id)
        try:
            config_from_builtins(spec.config)
        except ValidationError as exc:
            reason = exc.message.rpartition(_MSGSPEC_AT)[0] or exc.message
            raise config_error(where, exc.path.replace("$", f"{at}.config", 1), reason) from None
        try:
            check_agent_venue(spec.venue, spec.wallet_id, BUILT_VENUES, at)
        except ValidationError as exc:
            raise config_error(where, exc.path, exc.message) from None
        _check_quote(spec.quote, f"{at}.quote", where)
    for i, token in enumerate(settings.feeds.synthetic.tokens):
        try:
            require_mint(token, f"$.feeds.synthetic.tokens[{i}]")
        except ValidationError as exc:
            raise config_error(where, exc.path, exc.message) from None


def _check_quote(quote: str, path: str, where: str) -> None:
    """What the engine's create_agent needs of a config agent's quote, said before start-up."""
    try:
        mint = quote_mint(normalize_quote(quote, path))
    except ValidationError as exc:
        raise config_error(where, path, exc.message) from None
    if mint not in KNOWN_DECIMALS:
        raise config_error(
            where, path, "a quote mint of unknown decimals: use SOL, USDC, USDT (or the API)"
        )
