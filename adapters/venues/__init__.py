"""Venue adapters, and the venue rules every agent passes wherever it is declared."""

from __future__ import annotations

from collections.abc import Collection

from tradingd.engine.assets import PAPER_VENUE, SOL_MINT, normalize_quote, quote_mint
from tradingd.engine.errors import ValidationError

PAPER = PAPER_VENUE
JUPITER = "jupiter"


def configured_venues(jupiter_enabled: bool) -> frozenset[str]:
    """The venues a daemon builds (Daemon.__init__): paper always, Jupiter when
    `[venues.jupiter] enabled`. Config files are checked against these before anything starts,
    the control port against the running daemon's venues."""
    return frozenset({PAPER, JUPITER} if jupiter_enabled else {PAPER})


def check_agent_venue(
    venue: str,
    wallet_id: str | None,
    available: Collection[str],
    at: str = "$",
    quote: str | None = None,
) -> None:
    """One rule for an agent from a config file (`check-config`, `run`) or `POST /v1/agents`:
    its venue (`name` or `name:market`) is one the daemon runs, a live venue has a wallet, and a
    Jupiter agent trades against SOL (its fees and rent are paid in SOL from the same balance).
    Raises ValidationError whose path is `<at>.venue`, `<at>.wallet_id` or `<at>.quote`."""
    name = venue.split(":", 1)[0]
    if name not in available:
        hint = " (set [venues.jupiter] enabled = true)" if name == JUPITER else ""
        raise ValidationError(
            f"venue {venue!r} is not configured in this daemon "
            f"(configured: {', '.join(sorted(available))}){hint}",
            f"{at}.venue",
        )
    if name != PAPER and wallet_id is None:
        raise ValidationError("live venues need a wallet_id", f"{at}.wallet_id")
    if name == JUPITER and quote is not None:
        try:
            mint = quote_mint(normalize_quote(quote))
        except ValidationError:
            mint = None
        if mint != SOL_MINT:
            raise ValidationError(
                "a jupiter agent's quote must be SOL (network fees and token-account rent are "
                "paid from it)",
                f"{at}.quote",
            )
