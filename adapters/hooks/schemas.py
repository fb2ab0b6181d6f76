"""Wire types of the hook routes (docs/hooks.md): the admin routes' bodies and the TradingView
alert body as documented in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

Timestamp = Annotated[str, Meta(description="ISO-8601 UTC with milliseconds")]
TemplateName = Literal["tradingview", "json", "text"]


class HookIn(Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=128)]
    key_id: Annotated[
        str, Meta(min_length=1, max_length=128, description="a key with the `signals` scope")
    ]
    template: TemplateName = "tradingview"
    source: (
        Annotated[str, Meta(min_length=1, max_length=128, description="set on every signal")] | None
    ) = None
    type: (
        Annotated[str, Meta(max_length=64, description="the type when the body gives none")] | None
    ) = None
    strength: (
        Annotated[int, Meta(ge=1, le=5, description="the strength when the body gives none")] | None
    ) = None
    hmac: Annotated[bool, Meta(description="require X-Signature (secret shown once)")] = False


class HookCounts(Struct, kw_only=True):
    accepted: int
    duplicate: int
    refused: int
    bad_signature: int
    rate_limited: int


class HookOut(Struct, kw_only=True):
    id: Annotated[str, Meta(description="the record id: revoke with it")]
    name: str
    id_prefix: Annotated[str, Meta(description="the first characters of the hook id")]
    key_id: str
    active: Annotated[
        bool, Meta(description="false once its key is revoked: the URL then answers 404")
    ]
    source: str | None
    template: TemplateName
    type: str | None
    strength: int | None
    hmac: bool
    created_at: Timestamp
    last_used_at: Timestamp | None
    counts: HookCounts


class HookCreated(HookOut):
    hook_id: Annotated[str, Meta(description="the secret in the URL; shown only here")]
    path: Annotated[str, Meta(description="POST here: /v1/hooks/<hook_id>; shown only here")]
    hmac_secret: Annotated[
        str | None, Meta(description="signs requests (X-Signature); shown only here")
    ]


class HookPage(Struct, kw_only=True):
    items: list[HookOut]
    next_cursor: str | None


class TradingViewAlert(Struct, kw_only=True):
    """A `tradingview` hook's body: the JSON the alert's message holds once TradingView has
    filled its placeholders. Other fields are ignored; a `json` hook takes the `POST
    /v1/signals` body, a `text` hook a line `buy <mint> [strength=4 type=X]` (text/plain)."""

    action: Annotated[
        str, Meta(description="buy|long, or sell|short|flat|close|exit (also as `side`)")
    ]
    token: Annotated[
        str | None, Meta(description="mint or market id (also `mint`); else from ticker")
    ] = None
    ticker: Annotated[
        str | None, Meta(description="a symbol of the [tokens] table (also `symbol`)")
    ] = None
    id: Annotated[str | None, Meta(description="client id: idempotency")] = None
    strength: int | str | None = None
    type: str | None = None
    source: Annotated[str | None, Meta(description="the hook's fixed source wins")] = None
    reason: Annotated[str | None, Meta(description="also `comment` or `message`")] = None
    expires_in_ms: int | str | None = None
