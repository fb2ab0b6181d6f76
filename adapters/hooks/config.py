"""`[hooks]`: the bounds of header-less ingest (docs/hooks.md)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct


class HooksSettings(Struct, forbid_unknown_fields=True, kw_only=True):
    # Each hook has its own token bucket (a leaked URL cannot drown the daemon in signals);
    # TradingView fires one request per alert, so a few per second is generous.
    rate_limit_per_s: Annotated[float, Meta(gt=0, le=10_000)] = 2.0
    rate_limit_burst: Annotated[int, Meta(ge=1, le=100_000)] = 20
    max_hooks: Annotated[int, Meta(ge=1, le=100_000)] = 100  # live hooks in the hooks file
    # A signed request carrying `X-Signature-Timestamp` is refused when that time is further
    # than this from the daemon's clock (a replayed capture).
    max_signature_age_s: Annotated[int, Meta(ge=1, le=86_400)] = 300
