"""Body templates: what a hook's sender writes, turned into a `POST /v1/signals` body.

- `json`: the body of `POST /v1/signals`, strictly (unknown fields are a 422).
- `tradingview`: the JSON object a TradingView alert's message holds once TradingView has
  replaced its placeholders. Only the fields below are read; others (`close`, `time`,
  `interval`, ...) are ignored, since alert bodies carry what their authors find useful.
  `action`/`side`: buy|long → buy; sell|short|flat|close|exit → sell (spot: a short closes).
  `token`/`mint`: the instrument; without one, `ticker`/`symbol` is looked up in the config's
  `[tokens]` table (its `symbol`s, case-insensitive; `BONKUSDT`, `BONK/USDC`, `BONKUSD` and
  `BONKSOL` also find `BONK`); beside one, a ticker naming another token of the table is a 422. `id` (idempotency), `strength` (1..5, a whole number, also as
  `4.0` or text), `type`, `source`, `reason` (or `comment`/`message`), `expires_in_ms`.
  A value still holding `{{...}}` (a placeholder TradingView did not know) is a 422.
- `text`: one line `<side> <token or symbol> [name=value ...]`, names among strength, type,
  symbol, id, source, reason, expires_in_ms (`buy <mint> strength=4 type=breakout`).

Then the hook's fixed `source` replaces the body's, its `type`/`strength` fill those the body
left out, and the result is checked as a `POST /v1/signals` body (422 naming the field)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from tradingd.adapters.http.codec import decode, validation_error
from tradingd.adapters.http.errors import MalformedJson
from tradingd.adapters.http.schemas import SignalIn
from tradingd.adapters.http.text_rule import CONTROL
from tradingd.engine.assets import is_mint
from tradingd.engine.errors import ValidationError

_object = msgspec.json.Decoder(dict[str, Any])
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_WHOLE = re.compile(r"([0-9]{1,15})(?:\.0*)?")  # "4", "4.0": TradingView prints plots so
BUY_WORDS = frozenset(("buy", "long"))
SELL_WORDS = frozenset(("sell", "short", "flat", "close", "exit"))
QUOTE_SUFFIXES = ("USDT", "USDC", "USD", "SOL")
TEXT_NAMES = ("strength", "type", "symbol", "id", "source", "reason", "expires_in_ms")
# tradingview: our field <- the body's names for it, first present wins
TV_FIELDS: dict[str, tuple[str, ...]] = {
    "side": ("action", "side"),
    "token": ("token", "mint"),
    "symbol": ("symbol", "ticker"),
    "id": ("id",),
    "strength": ("strength",),
    "type": ("type",),
    "source": ("source",),
    "reason": ("reason", "comment", "message"),
    "expires_in_ms": ("expires_in_ms",),
}
_INT_FIELDS = ("strength", "expires_in_ms")


@dataclass(frozen=True)
class HookDefaults:
    """What a hook sets on every signal: `source` over the body's, `type`/`strength` where the
    body has none."""

    source: str | None = None
    type: str | None = None
    strength: int | None = None


def symbol_index(tokens: Mapping[str, Any]) -> dict[str, str | None]:
    """Upper-cased symbol → mint, from the config's `[tokens.<mint>]` table (None: two mints
    share the symbol, so it names neither)."""
    index: dict[str, str | None] = {}
    for mint, entry in tokens.items():
        symbol = getattr(entry, "symbol", None)
        if symbol:
            key = symbol.upper()
            index[key] = None if key in index and index[key] != mint else mint
    return index


def resolve_symbol(text: str, symbols: Mapping[str, str | None], path: str) -> str:
    """The mint of a ticker such as `BONK`, `BONKUSDT` or `BONK/USDC` (422 at `path` if none or
    several)."""
    ticker = text.strip().upper()
    candidates = [ticker]
    base = ticker.replace("/", "").replace("-", "").replace("_", "")
    for suffix in QUOTE_SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            candidates.append(base.removesuffix(suffix))
    for candidate in candidates:
        if candidate in symbols:
            mint = symbols[candidate]
            if mint is None:
                raise ValidationError(
                    f"symbol {candidate[:32]!r} names several tokens in [tokens]: send token",
                    path,
                )
            return mint
    raise ValidationError(
        f"{text[:32]!r} is not a symbol of the [tokens] table: send token (a mint or "
        "<exchange>:<BASE>/<QUOTE>) or add the token with its symbol to the config",
        path,
    )


def side_of(word: str, path: str) -> str:
    lowered = word.strip().lower()
    if lowered in BUY_WORDS:
        return "buy"
    if lowered in SELL_WORDS:
        return "sell"
    raise ValidationError(
        f"{word[:32]!r} is not a side: one of {', '.join(sorted(BUY_WORDS | SELL_WORDS))}", path
    )


def to_signal_in(
    template: str, raw: bytes, defaults: HookDefaults, symbols: Mapping[str, str | None]
) -> SignalIn:
    """The `POST /v1/signals` body a hook's request stands for. Raises MalformedJson (400) or
    ValidationError (422, `details.path` naming the field as the sender wrote it)."""
    if template == "json":
        fields = decode(raw, _object)
    elif template == "tradingview":
        fields = _tradingview(decode(raw, _object), symbols)
    else:
        fields = _text(raw, symbols)
    return _finish(fields, defaults)


def _finish(fields: dict[str, Any], defaults: HookDefaults) -> SignalIn:
    if defaults.source is not None:
        fields["source"] = defaults.source
    if defaults.type is not None and not fields.get("type"):
        fields["type"] = defaults.type
    if defaults.strength is not None and "strength" not in fields:
        fields["strength"] = defaults.strength
    try:
        return msgspec.convert(fields, SignalIn)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def _tradingview(body: dict[str, Any], symbols: Mapping[str, str | None]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, aliases in TV_FIELDS.items():
        for alias in aliases:
            if alias in body and body[alias] is not None:
                fields[name] = _value(name, body[alias], f"$.{alias}")
                break
    if "side" not in fields:
        raise ValidationError("a TradingView alert body needs action (buy or sell)", "$.action")
    fields["side"] = side_of(str(fields["side"]), "$.action" if "action" in body else "$.side")
    path = "$.symbol" if "symbol" in body else "$.ticker"
    if "token" not in fields:
        if "symbol" not in fields:
            raise ValidationError(
                "send token (a mint) or a ticker of the [tokens] table", "$.token"
            )
        fields["token"] = resolve_symbol(str(fields["symbol"]), symbols, path)
    elif "symbol" in fields:
        # A ticker beside a token labels it in alerts and notifications: it must not name
        # another token of the [tokens] table ("USDC" on a meme coin's mint).
        try:
            named = resolve_symbol(str(fields["symbol"]), symbols, path)
        except ValidationError:
            named = None  # not in the table: a label, as POST /v1/signals takes one
        if named is not None and named != fields["token"]:
            raise ValidationError(
                f"{str(fields['symbol'])[:32]!r} names another token of the [tokens] table "
                "than token: send one of them, or matching ones",
                path,
            )
    return fields


def _value(name: str, value: Any, path: str) -> Any:
    """A TradingView value as our field takes it: text trimmed, a number kept or read from
    text (TradingView substitutes text into the body, so `"{{plot_0}}"` arrives quoted)."""
    if isinstance(value, str):
        value = value.strip()
        if _PLACEHOLDER.search(value):
            raise ValidationError(
                "a TradingView placeholder was not replaced (check its spelling)", path
            )
        whole = _WHOLE.fullmatch(value)
        if name in _INT_FIELDS and whole is not None:
            return int(whole.group(1))
    elif name in _INT_FIELDS and isinstance(value, float) and value.is_integer():
        return int(value)  # a plot value written unquoted: `4.0`
    return value


def _text(raw: bytes, symbols: Mapping[str, str | None]) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("a text hook's body must be UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValidationError("a text hook takes one line: <side> <token> [name=value ...]", "$")
    line = lines[0]
    if CONTROL.search(line.replace("\t", " ")):
        raise ValidationError("text must not contain control characters", "$")
    if _PLACEHOLDER.search(line):
        raise ValidationError("a TradingView placeholder was not replaced", "$")
    words = line.split()
    if len(words) < 2:
        raise ValidationError("a text hook's line is <side> <token> [name=value ...]", "$")
    fields: dict[str, Any] = {"side": side_of(words[0], "$.side")}
    for word in words[2:]:
        name, sep, value = word.partition("=")
        if not sep or name not in TEXT_NAMES:
            raise ValidationError(
                f"{word[:40]!r} is not name=value with a name among {', '.join(TEXT_NAMES)}",
                f"$.{name[:40]}" if sep else "$",
            )
        if name in fields:
            raise ValidationError(f"{name} given twice", f"$.{name}")
        # ASCII digits only: "²".isdigit() is True and int() refuses it (a 500 before)
        numeric = value.isascii() and value.isdigit() and len(value) <= 18
        fields[name] = int(value) if name in _INT_FIELDS and numeric else value
    target = words[1]
    if is_mint(target) or ":" in target:
        fields["token"] = target
    else:
        fields["token"] = resolve_symbol(target, symbols, "$.token")
        fields.setdefault("symbol", target.upper()[:32])
    return fields
