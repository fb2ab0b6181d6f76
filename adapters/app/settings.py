"""Daemon settings: one msgspec schema for the TOML file, overridden by the environment.

Unknown keys are errors (a typo must not silently change behaviour); every error names the key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from tradingd.adapters.app.exchange_settings import (
    SECRET_FIELDS,
    ExchangeAccountSettings,
    apply_secret_env,
    venue_exchanges,
)
from tradingd.adapters.app.venue_settings import SolanaSettings, VenueSettings
from tradingd.adapters.hooks.config import HooksSettings
from tradingd.adapters.notify.config import NotifySettings, resolve_secrets
from tradingd.engine.account_breakers import BreakerRules
from tradingd.engine.config import AgentConfig
from tradingd.engine.errors import ValidationError
from tradingd.engine.history import HistoryBounds
from tradingd.engine.price_sources import PricePolicy
from tradingd.engine.state import EngineOptions

Port = Annotated[int, Meta(ge=0, le=65535)]


class _S(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class HttpSettings(_S):
    host: str = "127.0.0.1"
    port: Port = 8080
    metrics_public: bool = False
    max_body_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    max_ticks_per_push: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    rate_limit_per_s: Annotated[float, Meta(gt=0)] = 200.0
    rate_limit_burst: Annotated[int, Meta(ge=1)] = 400
    # open connections (lowered to leave a quarter of the process's fd limit free)
    max_connections: Annotated[int, Meta(ge=1, le=1_000_000)] = 4096
    header_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 10.0  # first request's headers
    keepalive_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0  # idle between requests
    body_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 10.0  # a body, from its headers' end


class WsSettings(_S):
    price_interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 250
    max_lag_ms: Annotated[int, Meta(ge=10, le=600_000)] = 5000
    queue_size: Annotated[int, Meta(ge=8, le=1_000_000)] = 1024
    heartbeat_s: Annotated[float, Meta(gt=0, le=3600)] = 15.0
    auth_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    max_queue_bytes: Annotated[int, Meta(ge=64 * 1024, le=1024**3)] = 4 * 1024 * 1024
    subscribes_per_s: Annotated[float, Meta(gt=0, le=1000)] = 5.0
    subscribe_burst: Annotated[int, Meta(ge=1, le=1000)] = 20
    snapshot_interval_ms: Annotated[int, Meta(ge=0, le=60_000)] = 250
    token_interval_ms: Annotated[int, Meta(ge=10, le=600_000)] = 1000  # `token` messages


class EngineSettings(_S):
    max_price_age_ms: Annotated[int, Meta(ge=1)] = 60_000
    default_decimals: Annotated[int, Meta(ge=0, le=18)] = 6
    clock_interval_ms: Annotated[int, Meta(ge=10, le=60_000)] = 1000
    # History kept in memory (engine.history.HistoryBounds); older history is read from Postgres.
    dedupe_window_s: Annotated[int, Meta(ge=1, le=366 * 86_400)] = 86_400
    dedupe_max_ids: Annotated[int, Meta(ge=1, le=10_000_000)] = 100_000
    dedupe_max_executions: Annotated[int, Meta(ge=1, le=100_000_000)] = 1_000_000
    closed_positions_kept: Annotated[int, Meta(ge=1, le=1_000_000)] = 1000
    # Resting buys (signals with an `entry`): how far past its receipt one may expire, and how
    # many rest at once across agents (one more is skipped `resting_capacity`).
    max_resting_s: Annotated[int, Meta(ge=1, le=366 * 86_400)] = 86_400
    max_resting_entries: Annotated[int, Meta(ge=0, le=10_000_000)] = 100_000
    # A tick reaching more positions than this (a price falling through thousands of stops) has
    # its exits decided, and its paper fills settled, this many per event-loop turn, so the
    # control port keeps answering during the cascade; 0 turns slicing off.
    # benchmarks/exit_cascade.py measures it.
    cascade_slice: Annotated[int, Meta(ge=0, le=1_000_000)] = 256

    def history_bounds(self) -> HistoryBounds:
        return HistoryBounds(
            signal_window_ms=self.dedupe_window_s * 1000,
            signals_kept=self.dedupe_max_ids,
            signal_executions_kept=self.dedupe_max_executions,
            closed_kept=self.closed_positions_kept,
        )


class SyntheticFeedSettings(_S):
    enabled: bool = False
    tokens: list[str] = msgspec.field(default_factory=list)  # mints; demo mints when empty
    seed: int = 7
    interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 500
    start_price_usd: Annotated[float, Meta(gt=0)] = 1.0
    volatility_pct: Annotated[float, Meta(gt=0, le=50)] = 1.5
    sol_price_usd: Annotated[float, Meta(gt=0)] | None = 150.0  # publish a SOL price too


class PythFeedSettings(_S):
    """`[feeds.pyth]`: the Pyth Hermes price stream (../shared/contracts/pyth-hermes.md)."""

    enabled: bool = False
    url: Annotated[str, Meta(pattern=r"^https?://")] = "https://hermes.pyth.network"
    # Sent as `Authorization: Bearer <key>` (Hermes needs one since Aug 2026); the environment's
    # PYTH_API_KEY wins. Never logged.
    api_key: str | None = None
    ids: dict[str, str] = msgspec.field(default_factory=dict)  # mint -> feed id (64 hex)
    connect_timeout_s: Annotated[float, Meta(gt=0, le=120)] = 10.0
    # No byte at all (Hermes sends a keep-alive every 15 s) this long: the stream is dead.
    idle_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 30.0
    backoff_initial_ms: Annotated[int, Meta(ge=10, le=60_000)] = 500
    backoff_max_ms: Annotated[int, Meta(ge=10, le=600_000)] = 30_000
    max_event_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # How often the watched set is compared with the streamed one (a change opens a new stream).
    watch_interval_ms: Annotated[int, Meta(ge=50, le=60_000)] = 1000

    def __repr__(self) -> str:  # the settings may be printed or logged: never the key
        shown = (
            f"{f}={'[redacted]' if f == 'api_key' and self.api_key else repr(getattr(self, f))}"
            for f in self.__struct_fields__
        )
        return f"PythFeedSettings({', '.join(shown)})"


class DexScreenerFeedSettings(_S):
    """`[feeds.dexscreener]`: polling of DexScreener's token pairs
    (../shared/contracts/dexscreener.md)."""

    enabled: bool = False
    url: Annotated[str, Meta(pattern=r"^https?://")] = "https://api.dexscreener.com"
    chain: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")] = "solana"
    interval_ms: Annotated[int, Meta(ge=100, le=3_600_000)] = 5000  # one pass over the watched
    max_requests_per_min: Annotated[int, Meta(ge=1, le=300)] = 300
    max_addresses_per_request: Annotated[int, Meta(ge=1, le=30)] = 30
    # Only pools quoted in these tokens (e.g. ["SOL", "USDC"]: on Solana SOL, USDC and USDT
    # name their mints; anything else is a quote token address); empty: any quote. Matched by
    # address, never by the pool's own symbol.
    quote_symbols: list[Annotated[str, Meta(min_length=1, max_length=16)]] = msgspec.field(
        default_factory=list
    )
    request_timeout_s: Annotated[float, Meta(gt=0, le=120)] = 10.0
    max_response_bytes: Annotated[int, Meta(ge=1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024
    backoff_max_ms: Annotated[int, Meta(ge=10, le=600_000)] = 60_000


class RecordSettings(_S):
    """`[feeds.record]`: every tick, signal and clock turn the daemon receives, written to replay
    files (docs/replay-format.md), rotated by size and by UTC day."""

    enabled: bool = False
    path: str = "record/ticks.jsonl"  # relative to data_dir unless absolute
    max_bytes: Annotated[int, Meta(ge=1024, le=1024**4)] = 256 * 1024 * 1024
    rotate_daily: bool = True
    max_queue: Annotated[int, Meta(ge=100, le=10_000_000)] = 100_000  # records not yet written


class FeedSettings(_S):
    synthetic: SyntheticFeedSettings = msgspec.field(default_factory=SyntheticFeedSettings)
    pyth: PythFeedSettings = msgspec.field(default_factory=PythFeedSettings)
    dexscreener: DexScreenerFeedSettings = msgspec.field(default_factory=DexScreenerFeedSettings)
    record: RecordSettings = msgspec.field(default_factory=RecordSettings)
    # A buy signal for a token without a fresh price (or liquidity, for agents that need it)
    # waits at most this long for one fetch from the live feeds; 0: no fetch, the signal skips.
    signal_fetch_timeout_ms: Annotated[int, Meta(ge=0, le=30_000)] = 1500


class TokenSettings(_S):
    """`[tokens.<mint>]`: the token registry: what the config knows of a token."""

    symbol: Annotated[str, Meta(min_length=1, max_length=32)] | None = None
    decimals: Annotated[int, Meta(ge=0, le=18)] | None = None
    pyth_id: Annotated[str, Meta(pattern=r"^(0[xX])?[0-9a-fA-F]{64}$")] | None = None
    usd_pegged: bool = False  # priced at 1 USD until a feed prices it
    # Price sources for this token, highest priority first (overrides `[prices] sources`).
    sources: list[Annotated[str, Meta(min_length=1, max_length=32)]] | None = None


class ShutdownSettings(_S):
    grace_s: Annotated[float, Meta(ge=0, le=600)] = 10.0


class StoreSettings(_S):
    kind: Literal["embedded", "external", "memory"] = "embedded"
    redis_url: str | None = None
    database_url: str | None = None
    pause_buys_without_redis: bool = True
    # One read of history that left memory (old signal ids, closed positions, trades).
    history_read_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 2.0


class ClusterSettings(_S):
    """Hot standby (docs/cluster.md): `tradingd run --role active|standby` or `lease = true`
    take part in a lease in Redis; needs the external store."""

    lease: bool = False  # a plain `run` takes part as `--role active`
    lease_ms: Annotated[int, Meta(ge=300, le=60_000)] = 3000
    role: Literal["active", "standby"] | None = None  # `--role` sets it
    # Agent shards (adapters/cluster/shards.py): `tradingd run --shard I --shards N`. One shard
    # (the default) is a single process, as before; more need the external store.
    shards: Annotated[int, Meta(ge=1, le=64)] = 1
    shard: Annotated[int, Meta(ge=0, le=63)] = 0
    # How long the shard that received a signal waits for every shard's result (202 after it
    # with `shards_pending`), and the bound of each intake stream (XADD MAXLEN ~).
    intake_timeout_ms: Annotated[int, Meta(ge=10, le=600_000)] = 5000
    intake_maxlen: Annotated[int, Meta(ge=100, le=100_000_000)] = 100_000
    # A request naming another shard's agent is forwarded to its owner's control port (false:
    # answered 421 misdirected, naming the owner), waiting at most forward_timeout_ms.
    forward: bool = True
    forward_timeout_ms: Annotated[int, Meta(ge=100, le=600_000)] = 10_000

    def __post_init__(self) -> None:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} is not below shards = {self.shards}")

    def wanted(self) -> Literal["active", "standby"] | None:
        """The role this process takes part in the lease with: `role`, else active with
        `lease = true` or with shards (a shard always holds its shard's lease, so a second
        process started for the same shard waits as its standby instead of splitting its
        intake), else None: a plain single process, no lease."""
        return self.role or ("active" if self.lease or self.shards > 1 else None)


class AgentSpec(_S):
    """An agent declared in the config file; created at start-up if its id is unknown."""

    # the same bounds as the API's AgentIn (adapters/http/schemas.py)
    id: Annotated[str, Meta(min_length=1, max_length=128)]
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    venue: Annotated[str, Meta(max_length=64)] = "paper"
    quote: Annotated[str, Meta(min_length=1, max_length=64)] = "SOL"
    wallet_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    # an integer in TOML too (adapters/app/config_amounts.py)
    paper_deposit: (
        Annotated[str, Meta(pattern=r"^[0-9]{1,20}$", description="atomic units")] | None
    ) = None
    # An exchange agent ("ccxt:<account>"): quote atomic units allocated to it from the
    # account's balance when it is first created (reconciliation reports an account holding
    # less than its agents' allocations).
    allocation: (
        Annotated[str, Meta(pattern=r"^[0-9]{1,20}$", description="atomic units")] | None
    ) = None
    config: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        # The API's text rule (adapters/http/text_rule.py): msgspec reports this at `$.agents[N]`.
        from tradingd.adapters.http.text_rule import MESSAGE, find_control_text

        for name in ("id", "name", "venue", "quote", "wallet_id", "config"):
            found = find_control_text(getattr(self, name), name)
            if found is not None:
                raise ValueError(f"{found}: {MESSAGE}")
        # An allocation elsewhere would be silently ignored (paper_deposit funds a paper agent,
        # and any agent in a replay).
        if self.allocation is not None and not self.venue.startswith("ccxt:"):
            raise ValueError(
                "allocation is for exchange agents (venue ccxt:<account>); a paper agent is "
                "funded with paper_deposit"
            )


class PricesSettings(_S):
    # A tick more than this far ahead of the clock is refused (and counted): one bad timestamp
    # must never lock a token's price (later real ticks would look older).
    max_future_skew_ms: Annotated[int, Meta(ge=0, le=3_600_000)] = 5_000
    # Tokens with a known price. Beyond it a new token is refused (`token_capacity`) unless
    # watched (held, a quote, in a recent signal, in the watchlist); unwatched prices are
    # evicted oldest first to make room.
    max_tokens: Annotated[int, Meta(ge=10, le=10_000_000)] = 20_000
    # Instrument ids: mints, or markets of the config's exchange accounts ("binance:BTC/USDT").
    watchlist: list[Annotated[str, Meta(min_length=1, max_length=74)]] = msgspec.field(
        default_factory=list
    )
    # Buys need a price no older than this (ms); exits never act on an older tick, and a source
    # silent this long is stale. Unset: `[engine] max_price_age_ms`.
    max_price_age_ms: Annotated[int, Meta(ge=1)] | None = None
    # Price sources by priority, highest first: a token's price comes from the first source in
    # this list with a fresh price; sources not listed rank after every listed one. Empty: every
    # source is equal and the newest tick wins.
    sources: list[Annotated[str, Meta(min_length=1, max_length=32)]] = msgspec.field(
        default_factory=list
    )
    # Two fresh sources differing by more than this (percent of the lower price) raise a
    # `price_divergence` alert and, with block_buys_on_divergence, block buys of the token.
    max_divergence_pct: Annotated[float, Meta(gt=0, le=1000)] | None = None
    block_buys_on_divergence: bool = True
    # Market data (liquidity, market cap, FDV, volume, pair age) older than this is unknown.
    max_market_age_ms: Annotated[int, Meta(ge=1)] = 300_000


class BreakersSettings(_S):
    """Account breakers (docs/breakers.md, engine/account_breakers.py): each rule is off
    unless set; a trip halts buys until an admin resets it."""

    # Account equity in USD more than this percent below the UTC day's peak.
    equity_drawdown_pct: Annotated[float, Meta(gt=0, lt=100)] | None = None
    # This many positions in a row (account-wide) closed by their stop-loss.
    consecutive_stop_outs: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    # A token with open positions without an admitted tick for more than this many seconds.
    stale_feeds_s: Annotated[int, Meta(ge=1, le=7 * 86_400)] | None = None
    # At least this percent of the last `order_failure_window` orders failed (once
    # `min_orders` of them have ended).
    order_failure_rate: Annotated[float, Meta(gt=0, le=100)] | None = None
    order_failure_window: Annotated[int, Meta(ge=1, le=100_000)] = 20
    min_orders: Annotated[int, Meta(ge=1, le=100_000)] = 10
    # A trip also sells every open position.
    flatten: bool = False

    def __post_init__(self) -> None:
        if self.min_orders > self.order_failure_window:
            raise ValueError(
                f"breakers.min_orders ({self.min_orders}) must not exceed "
                f"breakers.order_failure_window ({self.order_failure_window})"
            )

    def rules(self) -> BreakerRules:
        return BreakerRules(
            equity_drawdown_pct=self.equity_drawdown_pct,
            consecutive_stop_outs=self.consecutive_stop_outs,
            stale_feeds_s=self.stale_feeds_s,
            order_failure_rate=self.order_failure_rate,
            order_failure_window=self.order_failure_window,
            min_orders=self.min_orders,
            flatten=self.flatten,
        )


class SourcesSettings(_S):
    """Signal-provider scorecards (docs/sources.md, engine/scorecards.py)."""

    # Distinct signal sources given scorecards of their own; later ones count as "other".
    max_tracked: Annotated[int, Meta(ge=1, le=100_000)] = 1000
    # Sources one agent keeps a card (and a breaker) for; its later ones share its "other".
    max_per_agent: Annotated[int, Meta(ge=1, le=100_000)] = 200
    # Source cards the signals of one API key (a hook's: its bound key) may begin; its later
    # new sources count as "other", so one key cannot take every slot.
    max_per_key: Annotated[int, Meta(ge=1, le=100_000)] = 100
    # Sources given their own label in the Prometheus series (the first seen; the rest are
    # summed as source="other"), so the series count stays bounded.
    metrics_max: Annotated[int, Meta(ge=1, le=1000)] = 50


class Settings(_S):
    data_dir: str = "./var"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: pretty on a terminal, JSON lines otherwise (systemd, containers, files)
    log_format: Literal["auto", "pretty", "json"] = "auto"
    demo: bool = False
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    ws: WsSettings = msgspec.field(default_factory=WsSettings)
    engine: EngineSettings = msgspec.field(default_factory=EngineSettings)
    feeds: FeedSettings = msgspec.field(default_factory=FeedSettings)
    prices: PricesSettings = msgspec.field(default_factory=PricesSettings)
    venues: VenueSettings = msgspec.field(default_factory=VenueSettings)
    solana: SolanaSettings = msgspec.field(default_factory=SolanaSettings)
    shutdown: ShutdownSettings = msgspec.field(default_factory=ShutdownSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)  # adapters/cluster
    tokens: dict[str, TokenSettings] = msgspec.field(default_factory=dict)
    agents: list[AgentSpec] = msgspec.field(default_factory=list)
    hooks: HooksSettings = msgspec.field(default_factory=HooksSettings)  # adapters/hooks
    notify: NotifySettings = msgspec.field(default_factory=NotifySettings)  # adapters/notify
    breakers: BreakersSettings = msgspec.field(default_factory=BreakersSettings)
    sources: SourcesSettings = msgspec.field(default_factory=SourcesSettings)
    config_path: str | None = None  # where it was read from, for SIGHUP reloads

    def secret_values(self) -> tuple[str, ...]:
        """Values of the file that are secrets (API keys, an RPC URL with its provider's key in
        it): the log filter removes them wherever they appear."""
        public_rpc = ("https://api.mainnet-beta.solana.com", "https://api.devnet.solana.com")
        values = [self.feeds.pyth.api_key, self.venues.jupiter.api_key]
        if self.solana.rpc_url not in public_rpc:
            values.append(self.solana.rpc_url)
        for account in self.venues.ccxt.values():
            values.extend(getattr(account, field) for field in SECRET_FIELDS)
        values.extend(self.notify.secret_values())
        return tuple(v for v in values if v)


def _decode(obj: dict[str, Any], where: str) -> Settings:
    from tradingd.adapters.app.config_check import decode_error

    try:
        return msgspec.convert(obj, Settings, strict=True)
    except msgspec.ValidationError as exc:
        tokens = obj.get("tokens")
        accounts = (
            (obj.get("venues") or {}).get("ccxt") if isinstance(obj.get("venues"), dict) else None
        )

        def rename(path: str) -> str:
            return _account_by_name(_token_by_mint(path, tokens), accounts)

        raise decode_error(where, exc, obj, rename) from None


_ACCOUNTS = "$.venues.ccxt"


def _account_by_name(path: str, accounts: object) -> str:
    """msgspec names a bad `[venues.ccxt.<account>]` entry `$.venues.ccxt[...]` and a bad
    account name `key` in `$.venues.ccxt`: name the account."""
    if path == f"key` in `{_ACCOUNTS}":
        return _ACCOUNTS
    if not path.startswith(_ACCOUNTS + "[...]") or not isinstance(accounts, dict):
        return path
    for name, entry in accounts.items():
        try:
            msgspec.convert(entry, ExchangeAccountSettings, strict=True)
        except msgspec.ValidationError:
            return f"{_ACCOUNTS}.{str(name)[:40]}" + path.removeprefix(_ACCOUNTS + "[...]")
    return path


def _token_by_mint(path: str, tokens: object) -> str:
    """msgspec names a bad entry of the [tokens] table `$.tokens[...]`: name its mint."""
    if not path.startswith("$.tokens[...]") or not isinstance(tokens, dict):
        return path
    for mint, entry in tokens.items():
        try:
            msgspec.convert(entry, TokenSettings, strict=True)
        except msgspec.ValidationError:
            return f"$.tokens.{str(mint)[:60]}" + path.removeprefix("$.tokens[...]")
    return path


def _toml_amounts(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Integer amounts of the TOML file as the schema's decimal strings."""
    from tradingd.adapters.app.config_amounts import AmountError, amounts_as_strings
    from tradingd.adapters.app.config_check import config_error

    try:
        return amounts_as_strings(raw)
    except AmountError as exc:
        raise config_error(where, exc.path, str(exc)) from None


def paper_profile() -> dict[str, Any]:
    """The built-in profile used when no config file is given."""
    return {"demo": True, "feeds": {"synthetic": {"enabled": True}}}


def load_settings(path: str | None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    path = path or env.get("TRADINGD_CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValidationError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"{path}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ValidationError(f"{path}: cannot read: {exc.strerror}") from None
        raw = _toml_amounts(raw, path)
        raw["config_path"] = str(Path(path).resolve())
    else:
        raw = paper_profile()
    settings = _decode(raw, path or "built-in profile")
    if "TRADINGD_DATA_DIR" in env:
        settings.data_dir = env["TRADINGD_DATA_DIR"]
    if "TRADINGD_LOG_LEVEL" in env:
        level = env["TRADINGD_LOG_LEVEL"].lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ValidationError(f"TRADINGD_LOG_LEVEL: unknown level {level!r}")
        settings.log_level = level  # type: ignore[assignment]
    if "TRADINGD_LOG_FORMAT" in env:
        fmt = env["TRADINGD_LOG_FORMAT"].lower()
        if fmt not in ("auto", "pretty", "json"):
            raise ValidationError(
                f"TRADINGD_LOG_FORMAT: unknown format {fmt!r} (auto, pretty, json)"
            )
        settings.log_format = fmt  # type: ignore[assignment]
    if env.get("JUPITER_API_KEY"):
        settings.venues.jupiter.api_key = env["JUPITER_API_KEY"]
    apply_secret_env(settings.venues.ccxt, env)  # TRADINGD_CCXT_<ACCOUNT>_API_KEY, ...
    resolve_secrets(settings.notify, env, path or "built-in profile")  # env:VAR_NAME secrets
    if env.get("SOLANA_RPC_URL"):
        settings.solana.rpc_url = env["SOLANA_RPC_URL"]
    if env.get("REDIS_URL"):
        settings.store.redis_url = env["REDIS_URL"]
    if env.get("DATABASE_URL"):
        settings.store.database_url = env["DATABASE_URL"]
    if settings.store.redis_url or settings.store.database_url:
        settings.store.kind = "external"
    if env.get("TRADINGD_STORE") == "memory":
        settings.store.kind = "memory"
    elif env.get("TRADINGD_STORE") not in (None, "", "memory"):
        raise ValidationError(
            f"TRADINGD_STORE: only 'memory' is recognised, got {env['TRADINGD_STORE']!r}"
        )
    from tradingd.adapters.app.config_check import check_settings

    check_settings(settings, path or "built-in profile")
    return settings


def load_cli_settings(config: str | None, data_dir: str | None) -> Settings:
    """Settings as a `tradingd` subcommand sees them: `--data-dir` overrides the environment,
    which overrides the file. Raises ValidationError with a one-line reason."""
    env = dict(os.environ)
    if data_dir:
        env["TRADINGD_DATA_DIR"] = data_dir
    return load_settings(config, env)


def engine_options(settings: Settings) -> EngineOptions:
    """The Engine's keyword arguments from the settings: the daemon and `tradingd replay` build
    the same engine, so a recorded file replays to the same decisions."""
    prices = settings.prices
    from tradingd.adapters.cluster.shards import id_node

    return EngineOptions(
        node=id_node(settings.cluster.shard, settings.cluster.shards),
        max_price_age_ms=prices.max_price_age_ms or settings.engine.max_price_age_ms,
        default_decimals=settings.engine.default_decimals,
        history=settings.engine.history_bounds(),
        max_resting_ms=settings.engine.max_resting_s * 1000,
        max_resting_entries=settings.engine.max_resting_entries,
        max_future_skew_ms=prices.max_future_skew_ms,
        max_priced_tokens=prices.max_tokens,
        watchlist=prices.watchlist,
        price_policy=PricePolicy(
            sources=tuple(prices.sources),
            token_sources={m: tuple(t.sources) for m, t in settings.tokens.items() if t.sources},
            max_divergence_pct=prices.max_divergence_pct,
            block_buys_on_divergence=prices.block_buys_on_divergence,
            max_market_age_ms=prices.max_market_age_ms,
        ),
        pegged_usd=[m for m, t in settings.tokens.items() if t.usd_pegged],
        token_decimals={
            m: t.decimals for m, t in settings.tokens.items() if t.decimals is not None
        },
        venue_exchanges=venue_exchanges(settings.venues.ccxt),
        breakers=settings.breakers.rules(),
        max_sources=settings.sources.max_tracked,
        max_agent_sources=settings.sources.max_per_agent,
        max_key_sources=settings.sources.max_per_key,
    )


def agent_config(spec: AgentSpec) -> AgentConfig:
    from tradingd.engine.config import config_from_builtins

    return config_from_builtins(spec.config)
