"""What `check-config` and `run` both refuse before anything starts, in one message format:
`<file>: <key path>: <reason>`, agents named by id, e.g.
`x.toml: agents[id=alpha].config.stop_loss.trail_pct: Expected `float`, got `str``."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import msgspec
from tradingd.adapters.feeds import DAEMON_SOURCES
from tradingd.adapters.venues import check_agent_venue, configured_venues
from tradingd.engine.assets import (
    KNOWN_DECIMALS,
    QUOTE_SYMBOLS,
    is_mint,
    market_parts,
    normalize_quote,
    quote_mint,
    require_instrument,
    require_mint,
)
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


def decode_error(
    where: str,
    exc: msgspec.ValidationError,
    raw: dict[str, Any],
    rename: Callable[[str], str] = str,
) -> ValidationError:
    """A msgspec error on the whole file, with `agents[N]` renamed `agents[id=...]` and the
    path passed through `rename` first (settings.py names a [tokens] entry by its mint)."""
    reason, at, path = str(exc).rpartition(_MSGSPEC_AT)
    if not at:
        return config_error(where, "$", path)
    path = rename(path.rstrip("`"))
    return config_error(where, _agent_by_id(path, raw.get("agents")), reason)


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
    _check_exchange_accounts(settings, where)
    venues = configured_venues(settings.venues.jupiter.enabled, settings.venues.ccxt)
    exchanges = configured_exchanges(settings)
    for spec in settings.agents:
        at = f"$.agents[id={spec.id}]"
        if spec.id in seen:
            raise config_error(where, f"{at}.id", f"duplicate agent id {spec.id!r}")
        seen.add(spec.id)
        try:
            cfg = config_from_builtins(spec.config)
        except ValidationError as exc:
            reason = exc.message.rpartition(_MSGSPEC_AT)[0] or exc.message
            raise config_error(where, exc.path.replace("$", f"{at}.config", 1), reason) from None
        for i, token in enumerate(cfg.signals.tokens):  # instrument ids (validate_config)
            _check_instrument(token, f"{at}.config.signals.tokens[{i}]", where, exchanges)
        try:
            check_agent_venue(spec.venue, spec.wallet_id, venues, at, spec.quote)
        except ValidationError as exc:
            raise config_error(where, exc.path, exc.message) from None
        _check_quote(spec.quote, f"{at}.quote", where)
    for i, token in enumerate(settings.feeds.synthetic.tokens):
        _check_mint(token, f"$.feeds.synthetic.tokens[{i}]", where)
    _check_market_data(settings, where, exchanges)


def configured_exchanges(settings: Settings) -> frozenset[str]:
    """The CCXT exchange ids of the config's exchange accounts (`[venues.ccxt.<name>]
    exchange`); empty when it has none, and then a market id names any exchange (paper agents
    and replays trade markets without an account)."""
    return frozenset(account.exchange for account in settings.venues.ccxt.values())


def check_instrument_exchanges(exchanges: Collection[str], token: str, path: str) -> None:
    """When the config has exchange accounts (`exchanges`: their CCXT exchange ids, non-empty),
    a market id in it names one of their exchanges. Raises ValidationError naming `path`;
    nothing for a mint or a config without accounts. Whether the exchange lists the market is
    known once its markets load (the daemon checks signals and ticks against them)."""
    parts = market_parts(token)
    if parts is None or not exchanges or parts[0] in exchanges:
        return
    raise ValidationError(
        f"exchange {parts[0]!r} has no account in this config (exchanges of "
        f"[venues.ccxt.<name>]: {', '.join(sorted(exchanges))})",
        path,
    )


def _check_instrument(text: str, path: str, where: str, exchanges: Collection[str]) -> None:
    """An instrument id (a mint or `<exchange>:<BASE>/<QUOTE>`) of a configured exchange, in
    `check-config`'s message format."""
    try:
        require_instrument(text, path)
        check_instrument_exchanges(exchanges, text, path)
    except ValidationError as exc:
        raise config_error(where, exc.path, exc.message) from None


def _check_exchange_accounts(settings: Settings, where: str) -> None:
    """`[venues.ccxt.<account>]`: a CCXT exchange id CCXT knows, a sandbox only where CCXT has
    the exchange's testnet, an exchange whose orders the venue can look up by client order id,
    and accounts on one exchange agreeing on sandbox and urls (they share its markets and
    prices)."""
    accounts = settings.venues.ccxt
    if not accounts:
        return
    import ccxt.async_support as ccxt_async  # ~1 s to import: only when accounts are configured

    known = set(ccxt_async.exchanges)
    first: dict[str, tuple[str, object]] = {}
    for name in sorted(accounts):
        account = accounts[name]
        at = f"$.venues.ccxt.{name}"
        if account.exchange not in known:
            close = difflib.get_close_matches(account.exchange, sorted(known), n=1, cutoff=0.75)
            hint = f": did you mean {close[0]!r}?" if close else " (see ccxt.exchanges)"
            raise config_error(
                where, f"{at}.exchange", f"CCXT has no exchange {account.exchange!r}{hint}"
            )
        if account.sandbox and not getattr(ccxt_async, account.exchange)().urls.get("test"):
            raise config_error(
                where,
                f"{at}.sandbox",
                f"CCXT has no testnet for {account.exchange}: set urls to the testnet instead",
            )
        from tradingd.adapters.venues.ccxt.client import CLIENT_ID_PARAMS

        if account.exchange not in CLIENT_ID_PARAMS:
            raise config_error(
                where,
                f"{at}.exchange",
                f"orders on {account.exchange} cannot be looked up by client order id here, so "
                "a timeout could place one twice: supported exchanges are "
                f"{', '.join(sorted(CLIENT_ID_PARAMS))}",
            )
        shared = (account.sandbox, account.urls)
        other = first.setdefault(account.exchange, (name, shared))
        if other[1] != shared:
            raise config_error(
                where,
                f"{at}.sandbox",
                f"accounts {other[0]!r} and {name!r} trade {account.exchange} with different "
                "sandbox or urls: their markets and prices would differ under one instrument id",
            )


def _check_mint(text: str, path: str, where: str) -> None:
    try:
        require_mint(text, path)
    except ValidationError as exc:
        raise config_error(where, exc.path, exc.message) from None


def _check_market_data(settings: Settings, where: str, exchanges: Collection[str]) -> None:
    """The token registry, the Pyth feed ids and the price settings (issue 10). The watchlist
    takes instrument ids (an exchange market's ticker is watched too); the registry and Pyth
    name mints."""
    for i, token in enumerate(settings.prices.watchlist):
        _check_instrument(token, f"$.prices.watchlist[{i}]", where, exchanges)
    for mint, token in settings.tokens.items():
        _check_mint(mint, f"$.tokens.{mint[:60]}", where)
        known = KNOWN_DECIMALS.get(mint)
        if token.decimals is not None and known is not None and token.decimals != known:
            raise config_error(
                where,
                f"$.tokens.{mint}.decimals",
                f"{mint} has {known} decimals, not {token.decimals}",
            )
    pyth = settings.feeds.pyth
    for mint, feed_id in pyth.ids.items():
        _check_mint(mint, f"$.feeds.pyth.ids.{mint[:60]}", where)
        if not _FEED_ID.match(feed_id):
            raise config_error(
                where, f"$.feeds.pyth.ids.{mint}", "a Pyth feed id is 64 hex digits (0x optional)"
            )
    if pyth.enabled and not pyth_ids(settings):
        raise config_error(
            where,
            "$.feeds.pyth.ids",
            "the Pyth feed is enabled but no token has a feed id "
            "([feeds.pyth] ids or [tokens.<mint>] pyth_id)",
        )
    for at, names in [("$.prices.sources", settings.prices.sources)] + [
        (f"$.tokens.{m}.sources", t.sources or []) for m, t in settings.tokens.items()
    ]:
        for i, name in enumerate(names):
            _check_source_name(name, f"{at}[{i}]", where)
    if settings.feeds.dexscreener.chain == "solana":
        for i, quote in enumerate(settings.feeds.dexscreener.quote_symbols):
            if quote.upper() not in QUOTE_SYMBOLS and not is_mint(quote):
                raise config_error(
                    where,
                    f"$.feeds.dexscreener.quote_symbols[{i}]",
                    f"{quote!r} is neither SOL, USDC, USDT nor a mint address",
                )
    if pyth.backoff_initial_ms > pyth.backoff_max_ms:
        raise config_error(where, "$.feeds.pyth.backoff_initial_ms", "above backoff_max_ms")
    engine_age = settings.engine.max_price_age_ms
    age = settings.prices.max_price_age_ms
    if age is not None and "max_price_age_ms" in _set_engine_keys(settings) and age != engine_age:
        raise config_error(
            where,
            "$.prices.max_price_age_ms",
            f"differs from [engine] max_price_age_ms ({engine_age}): set one of them",
        )


def _check_source_name(name: str, path: str, where: str) -> None:
    """A listed source is a daemon feed or a push client's own name; one a letter or two off a
    daemon feed's (`pyht`) is a typo that would let a push client take its rank."""
    if name in DAEMON_SOURCES:
        return
    close = difflib.get_close_matches(name.strip().casefold(), DAEMON_SOURCES, n=1, cutoff=0.7)
    if close:
        raise config_error(where, path, f"unknown source {name!r}: did you mean {close[0]!r}?")


_FEED_ID = re.compile(r"^(0[xX])?[0-9a-fA-F]{64}$")


def _set_engine_keys(settings: Settings) -> set[str]:
    """Keys of [engine] whose value differs from the default (set in the file)."""
    default = type(settings.engine)()
    return {
        f
        for f in settings.engine.__struct_fields__
        if getattr(settings.engine, f) != getattr(default, f)
    }


def pyth_ids(settings: Settings) -> dict[str, str]:
    """mint -> Pyth feed id (64 lowercase hex, no 0x) from [feeds.pyth] ids and the registry's
    `pyth_id`s (the registry wins)."""
    ids = {m: f for m, f in settings.feeds.pyth.ids.items()}
    ids.update({m: t.pyth_id for m, t in settings.tokens.items() if t.pyth_id})
    return {m: f.lower().removeprefix("0x") for m, f in ids.items()}


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
