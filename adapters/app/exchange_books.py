"""What an exchange account should hold by its agents' books, and how that compares with what
the exchange reports: per currency code, in whole units (Decimal, exact from atomic units)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from msgspec import Struct
from tradingd.engine.assets import market_parts
from tradingd.engine.core import Engine
from tradingd.engine.lifecycle import HOLDING


class Booked(Struct, kw_only=True):
    """A currency's amount in the book (whole units) and the shortfall tolerated: what the
    venue leaves on the exchange below one amount step per position sold whole (the sub-step
    residue) is never a shortfall, nor is one atomic unit per quote balance (rounding of fees
    at the book's scale)."""

    amount: Decimal = Decimal(0)
    tolerance: Decimal = Decimal(0)


def _whole(atomic: int, decimals: int) -> Decimal:
    return Decimal(atomic).scaleb(-decimals)


def booked_amounts(engine: Engine, venue: str) -> dict[str, Booked]:
    """Currency code -> what the agents trading `venue` hold by the book: their quote balances'
    totals (reserved included) and their open positions' amounts per base currency."""
    agents = {a.id for a in engine.agents.values() if a.venue == venue}
    out: dict[str, Booked] = {}
    for agent_id in sorted(agents):
        for bal in engine.ledger.balances(agent_id):
            entry = out.setdefault(bal.asset.upper(), Booked())
            entry.amount += _whole(bal.total, bal.decimals)
            entry.tolerance += _whole(1, bal.decimals)
    for p in engine.positions.values():
        if p.agent_id not in agents or p.status not in HOLDING:
            continue
        parts = market_parts(p.token)
        if parts is None:
            continue
        entry = out.setdefault(parts[1], Booked())
        entry.amount += _whole(p.amount, p.decimals)
        rules = engine.instruments.get(p.token)
        entry.tolerance += _whole(rules.step if rules is not None else 1, p.decimals)
    return out


def compare_books(
    totals: Mapping[str, Decimal], books: Mapping[str, Booked]
) -> dict[str, dict[str, Any]]:
    """Per booked currency: the exchange's total and the book's (decimal strings, whole units),
    whether the exchange holds less than the book beyond its tolerance (`short`), and what it
    holds beyond the book (`unallocated`: the account's own funds, the sub-step residues exits
    leave, or an order the book does not know: reported, never alerted)."""
    report: dict[str, dict[str, Any]] = {}
    for code in sorted(books):
        booked = books[code]
        held = totals.get(code, Decimal(0))
        report[code] = {
            "exchange": whole_text(held),
            "book": whole_text(booked.amount),
            "short": held + booked.tolerance < booked.amount,
            "unallocated": whole_text(max(held - booked.amount, Decimal(0))),
        }
    return report


def whole_text(amount: Decimal) -> str:
    """A whole-unit amount as a plain decimal string without trailing zeros ("20000", "0.5")."""
    return format(amount.normalize(), "f") if amount else "0"
