"""Venue adapters, and the venue rules every agent passes wherever it is declared."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from tradingd.engine.assets import (
    CCXT_VENUE_PREFIX,
    PAPER_VENUE,
    SOL_MINT,
    USD_MARKET_QUOTES,
    normalize_quote,
    quote_mint,
    venue_exchange,
)
from tradingd.engine.errors import ValidationError

PAPER = PAPER_VENUE
JUPITER = "jupiter"
CCXT = CCXT_VENUE_PREFIX.rstrip(":")


def configured_venues(jupiter_enabled: bool, accounts: Iterable[str] = ()) -> frozenset[str]:
    """The venues a daemon builds (Daemon.__init__): paper always, Jupiter when
    `[venues.jupiter] enabled`, "ccxt:<account>" for each `[venues.ccxt.<account>]`. Config
    files are checked against these before anything starts, the control port against the
    running daemon's venues."""
    names = {PAPER, JUPITER} if jupiter_enabled else {PAPER}
    return frozenset(names | {CCXT_VENUE_PREFIX + a for a in accounts})


def check_agent_venue(
    venue: str,
    wallet_id: str | None,
    available: Collection[str],
    at: str = "$",
    quote: str | None = None,
) -> None:
    """One rule for an agent from a config file (`check-config`, `run`) or `POST /v1/agents`:
    its venue (`name` or `name:market`) is one the daemon runs, a live venue has a wallet, and a
    Jupiter agent trades against SOL (its fees and rent are paid in SOL from the same balance);
    an exchange agent (`ccxt:<account>`, a configured account) trades from its account, not a
    wallet, in USDT or USDC (its markets' quote). Raises ValidationError whose path is
    `<at>.venue`, `<at>.wallet_id` or `<at>.quote`."""
    if venue_exchange(venue) is not None or venue == CCXT:
        _check_exchange_agent(venue, wallet_id, available, at, quote)
        return
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


def _check_exchange_agent(
    venue: str, wallet_id: str | None, available: Collection[str], at: str, quote: str | None
) -> None:
    if venue not in available:
        accounts = sorted(v for v in available if v.startswith(CCXT_VENUE_PREFIX))
        raise ValidationError(
            f"venue {venue[:64]!r} is not a configured exchange account "
            f"(configured: {', '.join(accounts) or 'none'}; add [venues.ccxt.<account>])",
            f"{at}.venue",
        )
    if wallet_id is not None:
        raise ValidationError(
            "an exchange agent trades from its account's balance: no wallet_id", f"{at}.wallet_id"
        )
    if quote is not None and quote.upper() not in USD_MARKET_QUOTES:
        raise ValidationError(
            f"an exchange agent's quote is {' or '.join(sorted(USD_MARKET_QUOTES))} (the quote "
            "of the markets it trades)",
            f"{at}.quote",
        )
