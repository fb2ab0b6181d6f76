"""Agent configuration: the msgspec schema of API.md "Agent config", its defaults and the
cross-field rules msgspec constraints cannot express. Errors name the failing field path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from .assets import require_instrument
from .errors import ValidationError
from .money import pct_sum

MAX_ATOMIC = 2**64 - 1  # SPL token amounts are u64; nothing larger is a real amount

# Atomic amounts travel as decimal strings of non-negative integers (API.md conventions).
Atomic = Annotated[str, Meta(pattern=r"^(0|[1-9][0-9]{0,19})$", description="atomic units")]
Pct = Annotated[float, Meta(ge=-100, le=1_000_000)]
PositivePct = Annotated[float, Meta(gt=0, le=1_000_000)]
SellPct = Annotated[float, Meta(gt=0, le=100)]
Seconds = Annotated[int, Meta(ge=0, le=10 * 365 * 86400)]
StopMode = Literal["fixed", "trailing", "exponential", "zones", "custom"]


class _Cfg(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class SignalFilter(_Cfg):
    """Which signals an agent acts on: `min_strength` 1-5, `types` (empty: any), a token allow/deny
    list of mints, and for buys `min_liquidity_usd` (USD), `max_risk_score` (0-100: the token's
    risk score, engine/token_risk.py, must not exceed it) and `max_price_impact_pct` (percent
    0-100)."""

    min_strength: Annotated[int, Meta(ge=1, le=5)] = 1
    types: list[Annotated[str, Meta(max_length=64)]] = msgspec.field(default_factory=list)
    token_filter: Literal["none", "allow", "deny"] = "none"
    tokens: list[str] = msgspec.field(default_factory=list)
    min_liquidity_usd: Annotated[float, Meta(ge=0)] | None = None
    max_price_impact_pct: Annotated[float, Meta(gt=0, le=100)] | None = None
    max_risk_score: Annotated[int, Meta(ge=0, le=100)] | None = None


class Tier(_Cfg):
    """One sizing tier: from a quote balance of `min_balance`, buy `amount` (both quote atomic
    units, as decimal strings)."""

    min_balance: Atomic
    amount: Atomic


class Sizing(_Cfg):
    """How much quote one buy spends (atomic units as decimal strings): `fixed` `amount`,
    `balance_pct` (percent 0-100 of the available balance) or `tiers` by balance; `min_reserve`
    is never spent, `max_per_token` caps the cost held in one token."""

    mode: Literal["fixed", "balance_pct", "tiers"] = "fixed"
    amount: Atomic = "100000000"  # 0.1 SOL in lamports
    balance_pct: Annotated[float, Meta(gt=0, le=100)] = 10
    tiers: list[Tier] = msgspec.field(default_factory=list)
    min_reserve: Atomic = "0"
    max_per_token: Atomic | None = None


class Limits(_Cfg):
    """Pre-trade limits: open positions in all and per token (counts), `token_cooldown_s` after an
    exit of that token (seconds), and `daily_loss_limit_pct` (percent 0-100 of the day's
    starting equity) after which buys stop for the UTC day."""

    max_open_positions: Annotated[int, Meta(ge=0, le=100_000)] = 10
    max_positions_per_token: Annotated[int, Meta(ge=1, le=1000)] = 1
    token_cooldown_s: Seconds = 0
    daily_loss_limit_pct: Annotated[float, Meta(gt=0, le=100)] | None = None


class Execution(_Cfg):
    """Order parameters: `slippage_bps` and `fee_bps` (basis points), `priority_fee_lamports`
    (lamports), and `dust_quote` (quote atomic units, a decimal string): a remainder worth less
    is sold with the slice before it."""

    slippage_bps: Annotated[int, Meta(ge=0, le=5000)] = 100
    fee_bps: Annotated[int, Meta(ge=0, le=1000)] = 0
    priority_fee_lamports: Annotated[int, Meta(ge=0, le=10**10)] | None = None
    # A sell leaving a remainder worth less than this (quote atomic units, at the sell's price)
    # sells the remainder too. "1": only a remainder that is worth no quote at all.
    dust_quote: Atomic = "1"


class StopLevel(_Cfg):
    """One custom stop level: once the peak gain reaches `gain_pct`, the stop is `stop_pct` (both
    percent from the average entry)."""

    gain_pct: Annotated[float, Meta(gt=0, le=1_000_000)]
    stop_pct: Annotated[float, Meta(gt=-100, le=1_000_000)]


class StopLoss(_Cfg):
    """The stop-loss: `mode` fixed stepper, trailing (`trail_pct` percent below the peak),
    exponential, zones or custom `levels`; `default_pct` (negative percent from the average
    entry) until the mode moves it. It only ratchets up."""

    enabled: bool = True
    mode: StopMode = "fixed"
    default_pct: Annotated[float, Meta(gt=-100, lt=0)] = -32
    trail_pct: Annotated[float, Meta(gt=0, lt=100)] = 10
    levels: list[StopLevel] = msgspec.field(default_factory=list)


class TakeProfitLevel(_Cfg):
    """One take-profit level: at `gain_pct` (percent above the average entry), sell `sell_pct`
    (percent 0-100 of the original amount)."""

    gain_pct: PositivePct
    sell_pct: SellPct


class MoonBag(_Cfg):
    """Keep `retain_pct` (percent 0-100 of the original amount) out of take-profit sells once the
    gain reaches `trigger_gain_pct` (percent above the average entry)."""

    enabled: bool = False
    trigger_gain_pct: PositivePct = 300
    retain_pct: SellPct = 10


class TakeProfit(_Cfg):
    """The take-profit ladder: ascending `levels` whose `sell_pct` sum to at most 100, and the moon
    bag."""

    enabled: bool = False
    levels: list[TakeProfitLevel] = msgspec.field(
        default_factory=lambda: [TakeProfitLevel(gain_pct=50, sell_pct=25)]
    )
    moon_bag: MoonBag = msgspec.field(default_factory=MoonBag)


class DcaLevel(_Cfg):
    """One DCA level: at `drop_pct` (negative percent from the average entry), buy `buy_pct`
    (percent of the position's cost, up to 1000) more."""

    drop_pct: Annotated[float, Meta(gt=-100, lt=0)]
    buy_pct: Annotated[float, Meta(gt=0, le=1000)]


class Dca(_Cfg):
    """Averaging down: `levels` (deeper and deeper), at most `max_count` buys per position,
    `cooldown_s` seconds apart; past the last level the last one repeats."""

    enabled: bool = False
    levels: list[DcaLevel] = msgspec.field(
        default_factory=lambda: [DcaLevel(drop_pct=-15, buy_pct=50)]
    )
    max_count: Annotated[int, Meta(ge=0, le=100)] = 3
    cooldown_s: Seconds = 30


class StaleTrade(_Cfg):
    """Close a position held at least `min_hold_s` seconds whose gain stays between `min_pnl_pct`
    and `max_pnl_pct` (percent from the average entry)."""

    enabled: bool = False
    min_hold_s: Seconds = 3600
    min_pnl_pct: Pct = -5
    max_pnl_pct: Pct = 10


class SourceBreaker(_Cfg):
    """The per-source breaker (engine/source_breaker.py): stop taking buy signals from a source
    whose last `lookback_trades` closed positions (since the last reset) show
    `consecutive_losses` losses in a row, a drawdown of their cumulative PnL of at least
    `max_drawdown_pct` percent of the agent's quote deposits, or (with at least `min_trades`)
    a win rate under `min_win_rate_pct` percent; `reset_after_s` re-arms it on its own (None:
    only an operator's reset does). Each limit is optional (None: not judged)."""

    enabled: bool = False
    lookback_trades: Annotated[int, Meta(ge=1, le=1000)] = 20
    consecutive_losses: Annotated[int, Meta(ge=1, le=1000)] | None = None
    max_drawdown_pct: Annotated[float, Meta(gt=0, le=100)] | None = None
    min_win_rate_pct: Annotated[float, Meta(gt=0, le=100)] | None = None
    min_trades: Annotated[int, Meta(ge=1, le=1000)] = 10
    reset_after_s: Annotated[int, Meta(gt=0, le=10 * 365 * 86400)] | None = None


class AgentConfig(_Cfg):
    """An agent's whole configuration (API.md "Agent config"); every section has defaults.
    `max_hold_s`: close any position after this many seconds (None: never). Build it with
    `config_from_json` / `config_from_builtins`, which validate."""

    signals: SignalFilter = msgspec.field(default_factory=SignalFilter)
    sizing: Sizing = msgspec.field(default_factory=Sizing)
    limits: Limits = msgspec.field(default_factory=Limits)
    execution: Execution = msgspec.field(default_factory=Execution)
    stop_loss: StopLoss = msgspec.field(default_factory=StopLoss)
    take_profit: TakeProfit = msgspec.field(default_factory=TakeProfit)
    dca: Dca = msgspec.field(default_factory=Dca)
    stale_trade: StaleTrade = msgspec.field(default_factory=StaleTrade)
    max_hold_s: Annotated[int, Meta(gt=0, le=10 * 365 * 86400)] | None = None
    source_breaker: SourceBreaker = msgspec.field(default_factory=SourceBreaker)


def parse_atomic(text: str, path: str) -> int:
    """The int of `text`, a decimal string of atomic units already matched by the `Atomic` pattern.
    Raises ValidationError at `path` above the u64 maximum."""
    value = int(text)
    if value > MAX_ATOMIC:
        raise ValidationError(f"amount exceeds the u64 maximum {MAX_ATOMIC}", path)
    return value


def _ascending(values: Sequence[float | int], path: str, what: str) -> None:
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValidationError(f"{what} must be strictly ascending", f"{path}[{i}]")


def validate_config(cfg: AgentConfig) -> AgentConfig:
    """Rules across fields. Raises ValidationError naming the first failing path."""
    for i, token in enumerate(cfg.signals.tokens):
        require_instrument(token, f"$.signals.tokens[{i}]")
    if cfg.signals.token_filter == "allow" and not cfg.signals.tokens:
        raise ValidationError("token_filter 'allow' needs at least one token", "$.signals.tokens")
    s = cfg.sizing
    parse_atomic(s.amount, "$.sizing.amount")
    parse_atomic(s.min_reserve, "$.sizing.min_reserve")
    if s.max_per_token is not None:
        parse_atomic(s.max_per_token, "$.sizing.max_per_token")
    if s.mode == "fixed" and int(s.amount) == 0:
        raise ValidationError("fixed sizing needs an amount > 0", "$.sizing.amount")
    if s.mode == "tiers":
        if not s.tiers:
            raise ValidationError("tiers sizing needs at least one tier", "$.sizing.tiers")
        mins = [
            parse_atomic(t.min_balance, f"$.sizing.tiers[{i}].min_balance")
            for i, t in enumerate(s.tiers)
        ]
        for i, t in enumerate(s.tiers):
            parse_atomic(t.amount, f"$.sizing.tiers[{i}].amount")
        _ascending(mins, "$.sizing.tiers", "tier min_balance")
    sl = cfg.stop_loss
    if sl.mode == "custom":
        if not sl.levels:
            raise ValidationError("custom stop mode needs levels", "$.stop_loss.levels")
        _ascending([lv.gain_pct for lv in sl.levels], "$.stop_loss.levels", "gain_pct")
        # A stop is always below the peak, and ratchets: both hold only for rising stop levels.
        _ascending([lv.stop_pct for lv in sl.levels], "$.stop_loss.levels", "stop_pct")
        for i, lv in enumerate(sl.levels):
            if lv.stop_pct >= lv.gain_pct:
                raise ValidationError(
                    "stop_pct must be below its gain_pct", f"$.stop_loss.levels[{i}].stop_pct"
                )
    tp = cfg.take_profit
    if tp.enabled and not tp.levels:
        raise ValidationError("take_profit needs levels when enabled", "$.take_profit.levels")
    _ascending([lv.gain_pct for lv in tp.levels], "$.take_profit.levels", "gain_pct")
    # Exact, as written: 33.333 + 33.333 + 33.334 is 100, not 100.00000000000001.
    if pct_sum(lv.sell_pct for lv in tp.levels) > 100:
        raise ValidationError("take_profit sell_pct values sum above 100", "$.take_profit.levels")
    if cfg.dca.enabled and not cfg.dca.levels:
        raise ValidationError("dca needs levels when enabled", "$.dca.levels")
    _ascending([-lv.drop_pct for lv in cfg.dca.levels], "$.dca.levels", "drop depth")
    st = cfg.stale_trade
    if st.min_pnl_pct > st.max_pnl_pct:
        raise ValidationError("min_pnl_pct above max_pnl_pct", "$.stale_trade.min_pnl_pct")
    sb = cfg.source_breaker
    if sb.enabled and (
        sb.consecutive_losses is None
        and sb.max_drawdown_pct is None
        and sb.min_win_rate_pct is None
    ):
        raise ValidationError(
            "source_breaker needs a limit when enabled (consecutive_losses, max_drawdown_pct "
            "or min_win_rate_pct)",
            "$.source_breaker",
        )
    if sb.consecutive_losses is not None and sb.consecutive_losses > sb.lookback_trades:
        raise ValidationError(
            "consecutive_losses above lookback_trades: the breaker keeps only that many trades "
            "and would never trip",
            "$.source_breaker.consecutive_losses",
        )
    if sb.min_win_rate_pct is not None and sb.min_trades > sb.lookback_trades:
        raise ValidationError(
            "min_trades above lookback_trades: the win rate would never be judged",
            "$.source_breaker.min_trades",
        )
    return cfg


_config_decoder = msgspec.json.Decoder(AgentConfig)


def _error_path(message: str) -> str:
    marker = " - at `"
    if marker in message:
        return message.rsplit(marker, 1)[1].rstrip("`")
    return "$"


def config_from_json(raw: bytes | str) -> AgentConfig:
    """Decode and validate an AgentConfig from JSON bytes or text. Raises ValidationError naming
    the failing field path (unknown fields, wrong types, out-of-range values, cross-field
    rules)."""
    try:
        cfg = _config_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), _error_path(str(exc))) from None
    return validate_config(cfg)


def config_from_builtins(obj: Any, path_prefix: str = "$") -> AgentConfig:
    """Decode a dict (from TOML or an already-parsed request) with the same strictness."""
    try:
        cfg = msgspec.convert(obj, AgentConfig, strict=True)
    except msgspec.ValidationError as exc:
        path = _error_path(str(exc)).replace("$", path_prefix, 1)
        raise ValidationError(str(exc), path) from None
    return validate_config(cfg)
