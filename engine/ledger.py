"""Balances and realized performance per agent: the only code that changes a Balance.

Reservation discipline: `reserve` moves units from available to reserved; a buy's fill
`settle_buy`s (spends part or all of the reservation, releases the rest); a failure `release`s.
`total` never goes below `reserved` and `reserved` never below zero, or InvariantViolation."""

from __future__ import annotations

from .errors import InvariantViolation
from .model import Agent, Balance
from .risk import DAY_MS


class Ledger:
    def __init__(self) -> None:
        self._balances: dict[str, dict[str, Balance]] = {}

    def open_account(self, agent_id: str, quote: str, decimals: int) -> None:
        self._balances.setdefault(agent_id, {}).setdefault(
            quote, Balance(asset=quote, decimals=decimals)
        )

    def balances(self, agent_id: str) -> list[Balance]:
        return list(self._balances.get(agent_id, {}).values())

    def balance(self, agent_id: str, asset: str) -> Balance:
        return self._balances[agent_id][asset]

    def credit(self, agent_id: str, asset: str, decimals: int, amount: int) -> Balance:
        if amount < 0:
            raise InvariantViolation(f"negative credit {amount} to {agent_id}/{asset}")
        book = self._balances.setdefault(agent_id, {})
        bal = book.get(asset)
        if bal is None:
            bal = book[asset] = Balance(asset=asset, decimals=decimals)
        bal.total += amount
        return bal

    def reserve(self, agent_id: str, asset: str, amount: int) -> Balance:
        bal = self.balance(agent_id, asset)
        if amount <= 0 or amount > bal.available:
            raise InvariantViolation(
                f"reserve {amount} exceeds available {bal.available} of {agent_id}/{asset}"
            )
        bal.reserved += amount
        return bal

    def release(self, agent_id: str, asset: str, amount: int) -> Balance:
        bal = self.balance(agent_id, asset)
        if amount < 0 or amount > bal.reserved:
            raise InvariantViolation(
                f"release {amount} exceeds reserved {bal.reserved} of {agent_id}/{asset}"
            )
        bal.reserved -= amount
        return bal

    def settle_buy(self, agent_id: str, asset: str, reserved: int, spent: int) -> Balance:
        bal = self.release(agent_id, asset, reserved)
        if spent > bal.total:
            raise InvariantViolation(
                f"buy spends {spent} of total {bal.total} for {agent_id}/{asset}"
            )
        bal.total -= spent
        return bal

    def realize(self, agent: Agent, pnl: int, now: int) -> None:
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
        perf = agent.perf
        perf.trades += 1
        if position_pnl > 0:
            perf.wins += 1
        else:
            perf.losses += 1
