"""Venue adapters, and the venue rules every agent passes wherever it is declared."""

from __future__ import annotations

from collections.abc import Collection

from tradingd.engine.errors import ValidationError

PAPER = "paper"
# The venues a daemon builds (Daemon.__init__); config files are checked against these before
# anything starts, the control port against the running daemon's venues.
BUILT_VENUES: frozenset[str] = frozenset({PAPER})


def check_agent_venue(
    venue: str, wallet_id: str | None, available: Collection[str], at: str = "$"
) -> None:
    """One rule for an agent from a config file (`check-config`, `run`) or `POST /v1/agents`:
    its venue (`name` or `name:market`) is one the daemon runs, and a live venue has a wallet.
    Raises ValidationError whose path is `<at>.venue` or `<at>.wallet_id`."""
    if venue.split(":", 1)[0] not in available:
        raise ValidationError(
            f"venue {venue!r} is not configured in this daemon "
            f"(configured: {', '.join(sorted(available))})",
            f"{at}.venue",
        )
    if venue.split(":", 1)[0] != PAPER and wallet_id is None:
        raise ValidationError("live venues need a wallet_id", f"{at}.wallet_id")
