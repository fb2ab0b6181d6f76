"""Balances and realized performance per agent: the only code that changes a Balance.

Reservation discipline: `reserve` moves units from available to reserved; a buy's fill
`settle_buy`s (spends part or all of the reservation, releases the rest); a failure `release`s.
`total` never goes below `reserved` and `reserved` never below zero, or InvariantViolation."""

from __future__ import annotations

from collections.abc import Mapping

from .book import AgentBook
from .errors import InvariantViolation
from .model import Agent, Balance
from .risk import DAY_MS


class Ledger:
    """The accounts of the agents in `books` (agent id -> AgentBook): each agent's balances
    live in its book, so they are created and deleted with it. Amounts are atomic units of the
    asset."""

    def __init__(self, books: Mapping[str, AgentBook]) -> None:
        self._books = books

    def _account(self, agent_id: str) -> dict[str, Balance]:
        book = self._books.get(agent_id)
        if book is None:
            raise InvariantViolation(f"no account for unknown agent {agent_id!r}")
        return book.balances

    def balances(self, agent_id: str) -> list[Balance]:
        """Every balance of the agent (its quote first); [] for an unknown agent."""
        book = self._books.get(agent_id)
        return list(book.balances.values()) if book is not None else []

    def balance(self, agent_id: str, asset: str) -> Balance:
        """The agent's balance of `asset`. Raises KeyError when it has none, InvariantViolation
        for an unknown agent."""
        return self._account(agent_id)[asset]

    def credit(self, agent_id: str, asset: str, decimals: int, amount: int) -> Balance:
        """Add `amount` (atomic, >= 0) to the total of `asset`, opening the balance with
        `decimals` if new. Returns the balance; raises InvariantViolation on a negative amount
        or an unknown agent."""
        if amount < 0:
            raise InvariantViolation(f"negative credit {amount} to {agent_id}/{asset}")
        account = self._account(agent_id)
        bal = account.get(asset)
        if bal is None:
            bal = account[asset] = Balance(asset=asset, decimals=decimals)
        bal.total += amount
        return bal

    def reserve(self, agent_id: str, asset: str, amount: int) -> Balance:
        """Move `amount` (atomic, > 0) from available to reserved (a buy in flight). Returns
        the balance; raises InvariantViolation when it exceeds the available units."""
        bal = self.balance(agent_id, asset)
        if amount <= 0 or amount > bal.available:
            raise InvariantViolation(
                f"reserve {amount} exceeds available {bal.available} of {agent_id}/{asset}"
            )
        bal.reserved += amount
        return bal

    def release(self, agent_id: str, asset: str, amount: int) -> Balance:
        """Give back `amount` (atomic) of the reservation (a buy that failed). Returns the
        balance; raises InvariantViolation when it exceeds what is reserved."""
        bal = self.balance(agent_id, asset)
        if amount < 0 or amount > bal.reserved:
            raise InvariantViolation(
                f"release {amount} exceeds reserved {bal.reserved} of {agent_id}/{asset}"
            )
        bal.reserved -= amount
        return bal

    def charge(self, agent_id: str, asset: str, amount: int) -> tuple[Balance, int]:
        """Take a cost that bought nothing (a network fee of a transaction that failed on
        chain), `amount` atomic >= 0, from what is not reserved. Returns the balance and the part
        that could not be taken (more than the unreserved total): the caller reports it."""
        bal = self.balance(agent_id, asset)
        if amount < 0:
            raise InvariantViolation(f"negative charge {amount} to {agent_id}/{asset}")
        taken = min(amount, bal.available)
        bal.total -= taken
        return bal, amount - taken

    def settle_buy(self, agent_id: str, asset: str, reserved: int, spent: int) -> Balance:
        """A buy filled: release its `reserved` units and take the `spent` ones (atomic,
        spent <= reserved) from the total. Returns the balance; raises InvariantViolation."""
        bal = self.release(agent_id, asset, reserved)
        if spent > bal.total:
            raise InvariantViolation(
                f"buy spends {spent} of total {bal.total} for {agent_id}/{asset}"
            )
        bal.total -= spent
        return bal

    def realize(self, agent: Agent, pnl: int, now: int) -> None:
        """Book realized PnL (quote atomic, signed) at `now` (epoch ms) into the agent's
        performance: the day's counters (UTC day), equity peak and max drawdown (percent)."""
        perf = agent.perf
        day = now // DAY_MS
        if perf.day != day:
            # Realized equity (deposits + realized PnL) before this day's first realization:
            # independent of how much quote is tied up in open positions at that moment.
            perf.day = day
            perf.day_realized = 0
            perf.day_start_equity = agent.deposited + perf.realized_pnl
        perf.day_realized += pnl
        perf.realized_pnl += pnl
        equity = agent.deposited + perf.realized_pnl
        perf.equity_peak = max(perf.equity_peak, agent.deposited)  # the first loss is a drawdown
        if equity > perf.equity_peak:
            perf.equity_peak = equity
        elif perf.equity_peak > 0:
            drawdown = (perf.equity_peak - equity) * 100.0 / perf.equity_peak
            perf.max_drawdown_pct = max(perf.max_drawdown_pct, drawdown)

    @staticmethod
    def count_round_trip(agent: Agent, position_pnl: int) -> None:
        """A position closed with `position_pnl` (quote atomic): one more trade, a win if > 0,
        else a loss."""
        perf = agent.perf
        perf.trades += 1
        if position_pnl > 0:
            perf.wins += 1
        else:
            perf.losses += 1
