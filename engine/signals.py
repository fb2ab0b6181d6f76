"""Signal intake: idempotency, per-agent filters and eligibility, sizing and the reservation of
a buy, exits for sell signals, and the execution record of every agent a signal reached."""

from __future__ import annotations

import math

from . import events as ev
from .assets import is_market, quote_mint, require_instrument
from .buying import attribution, lot_reason, market_reason, open_entry, standing_reason
from .errors import ValidationError
from .lifecycle import PositionStatus
from .model import Agent, Attribution, Execution, Position, Signal
from .price_book import decimals_conflict, learn_decimals
from .resting import RestingEntries
from .risk import filter_reason, size_buy
from .scorecards import OTHER
from .state import EngineState, SignalRecord


class SignalIntake:
    """The intake of signals, a collaborator of the Engine: it changes only the `state` it is
    given (the books, the ledger through them, the signal window, the event buffer), and only
    when the Engine calls `on_signal`. A buy with an entry condition goes to `resting`."""

    def __init__(self, state: EngineState, resting: RestingEntries) -> None:
        self.state = state
        self.resting = resting

    def on_signal(self, signal: Signal) -> tuple[SignalRecord, bool]:
        """Returns (record, duplicate). A signal whose id is in the dedupe window, or a client
        id repeated within it (see engine.history), returns the first record; past it, the memory no longer knows the id
        (the control port asks Postgres, the system of record, before calling this)."""
        now = self.state.clock()
        self.state.signal_window.evict(now)
        known_record = self.state.signals.get(signal.id)
        if known_record is not None:  # delivered again (agent shards: after a crash, unacked)
            return known_record, True
        if signal.client_id is not None:
            known = self.state.signal_by_client.get(signal.client_id)
            if known is not None and known in self.state.signals:
                return self.state.signals[known], True
        require_instrument(signal.token, "$.token")
        if signal.entry is not None:
            self._check_entry(signal)
        if signal.decimals is not None and is_market(signal.token):
            raise ValidationError(
                "decimals of an exchange market come from the exchange: leave them out",
                "$.decimals",
            )
        if signal.decimals is not None and decimals_conflict(
            self.state, signal.token, signal.decimals, now
        ):
            raise ValidationError(
                f"decimals {signal.decimals} conflict with the token's known decimals "
                f"{self.state.decimals[signal.token]}",
                "$.decimals",
            )
        learn_decimals(self.state, signal.token, signal.decimals)
        record = SignalRecord(signal=signal, executions={})
        self.state.signal_window.keep(record)
        self.state._emit(
            ev.SignalReceived(
                ts=now,
                signal_id=signal.id,
                token=signal.token,
                side=signal.side,
                type=signal.type,
                strength=signal.strength,
                symbol=signal.symbol,
                source=signal.source,
                reason=signal.reason,
                client_id=signal.client_id,
                expires_at=signal.expires_at,
                decimals=signal.decimals,
            )
        )
        filtered: dict[str, str] = {}
        state = self.state
        cards = state.scorecards
        cards.signal_received(signal.source, signal.key_id, now)
        opened_by = attribution(state, signal) if signal.side == "buy" else None
        liquidity = state.market.liquidity_usd(
            signal.token, now, state.price_policy.max_market_age_ms
        )
        score: list[int] = []  # the token's risk score, computed once, if an agent asks

        def risk_score() -> int:
            if not score:
                score.append(state.token_risk(signal.token).score)
            return score[0]

        for agent in [b.agent for b in self.state.books.values()]:
            reason = filter_reason(
                agent.config, signal, liquidity, signal.side == "buy", risk_score
            )
            if reason is not None:
                record.executions[agent.id] = Execution(
                    agent_id=agent.id, status="skipped", reason=reason
                )
                filtered[agent.id] = reason
                continue
            record.agents_matched += 1
            if signal.side == "buy" and self._source_breaker_open(agent, signal.source, now):
                self._skip(record, agent.id, "source_breaker", now)
            elif signal.entry is not None:
                self.resting.rest(agent, signal, record, now, opened_by)
            elif signal.side == "buy":
                self._buy_for(agent, signal, record, now, opened_by)
            else:
                self._sell_for(agent, signal, record, now)
        if filtered:
            self.state._emit(ev.SignalFiltered(ts=now, signal_id=signal.id, reasons=filtered))
            cards.filtered(signal.source, filtered, now)
        if signal.entry is not None and signal.id in self.state.entries_by_signal:
            self.resting.at_last_price(signal.token, now)
        self.state.signal_window.executions_added(record, 0)
        self.state.signal_window.evict(now, keep=1)
        return record, False

    def _skip(self, record: SignalRecord, agent_id: str, reason: str, now: int) -> None:
        execution = Execution(agent_id=agent_id, status="skipped", reason=reason)
        self.state._put_execution(record, execution, now)

    def _check_entry(self, signal: Signal) -> None:
        """A resting buy's contract: a buy, a finite positive price below 1e300 (the API's
        bound on a price), an expiry after its receipt and at most `max_resting_ms` after it
        (one that passed while the signal waited, say for its first price, is skipped
        `expired` by each agent, as a market buy is). Raises ValidationError naming the
        field."""
        assert signal.entry is not None
        if signal.side != "buy":
            raise ValidationError("an entry condition is for buy signals only", "$.entry")
        price = signal.entry.price_usd
        if not (math.isfinite(price) and 0 < price < 1e300):
            raise ValidationError(
                "entry price_usd must be a number > 0 and < 1e300", "$.entry.price_usd"
            )
        rest_ms = signal.expires_at - signal.received_at
        if not 0 < rest_ms <= self.state.max_resting_ms:
            raise ValidationError(
                f"expires_at must be after now and at most {self.state.max_resting_ms} ms "
                "after it (the maximum resting time)",
                "$.expires_at",
            )

    def _buy_reason(self, agent: Agent, signal: Signal, now: int) -> str | None:
        state = self.state
        if signal.token == quote_mint(agent.quote):  # buying the quote with itself
            return "token_is_quote"
        if now > signal.expires_at:
            return "expired"
        return standing_reason(state, agent, signal.token) or market_reason(
            state, agent, signal.token, now
        )

    def _source_breaker_open(self, agent: Agent, source: str, now: int) -> bool:
        """Whether the agent's breaker on `source` is tripped now (one due for its timed reset
        is reset here, with an alert)."""
        cfg = agent.config.source_breaker
        if not cfg.enabled:
            return False
        cards = self.state.scorecards
        name = cards.agent_name(agent.id, cards.name(source))
        if name == OTHER:  # a card shared by many sources has no breaker
            return False
        breaker = cards.breaker(agent.id, name)
        if breaker is None or breaker.tripped_at is None:
            return False
        if not breaker.due_reset(cfg, now):
            return True
        cards.reset(agent.id, name, now)
        self.state._source_breaker_alert("breaker_reset", agent.id, name, "timed reset", {}, now)
        return False

    def _buy_for(
        self,
        agent: Agent,
        signal: Signal,
        record: SignalRecord,
        now: int,
        opened_by: Attribution | None = None,
    ) -> None:
        reason = self._buy_reason(agent, signal, now)
        if reason is not None:
            return self._skip(record, agent.id, reason, now)
        bal = self.state.ledger.balance(agent.id, agent.quote)
        exposure = self.state.books[agent.id].exposure
        amount, reason = size_buy(agent.config, bal.available, exposure.committed[signal.token])
        if reason is None:
            price = self.state.prices[signal.token].price_usd
            reason = lot_reason(self.state, agent, signal.token, amount, price)
        if reason is not None:
            return self._skip(record, agent.id, reason, now)
        self.state.ledger.reserve(agent.id, agent.quote, amount)
        exposure.commit(signal.token, amount)
        p, order = open_entry(
            self.state,
            agent,
            signal.token,
            signal.symbol,
            amount,
            now,
            signal_id=signal.id,
            signal_type=signal.type,
            expires_at=signal.expires_at,
            latency_ms=float(now - signal.received_at),
            opened_by=opened_by,
        )
        execution = Execution(
            agent_id=agent.id,
            status="pending",
            position_id=p.id,
            order_id=order.id,
            latency_ms=float(now - signal.received_at),
        )
        self.state._put_execution(record, execution, now)
        self.state._balance_changed(agent.id, bal, now)

    def _sell_for(self, agent: Agent, signal: Signal, record: SignalRecord, now: int) -> None:
        """Sell every position of the agent in the signal's token: now, or, for a position with
        an order in flight (a DCA buy, a partial take-profit), once that order settles. The
        execution record follows the first position's sell to its end."""
        first: Position | None = None
        order_id = None
        closing = False
        held = self.state.books[agent.id].exposure.by_token[signal.token] > 0
        for p in list(self.state.books[agent.id].live.values()) if held else ():
            if p.token != signal.token or p.status == PositionStatus.CLOSED:
                continue
            if not p.amount and p.status != PositionStatus.OPENING:
                continue
            if p.in_flight is not None and (
                self.state._selling_all(p) or p.pending_exit is not None
            ):
                closing = True  # already being sold whole, or an exit is already waiting
                continue
            oid = self.state._exit_or_pend(p, "signal", signal.id)
            if first is None and (oid is not None or p.pending_exit is not None):
                first, order_id = p, oid
        if first is None:
            reason = "position_closing" if closing else "no_open_position"
            return self._skip(record, agent.id, reason, now)
        latency = float(now - signal.received_at)
        execution = Execution(
            agent_id=agent.id,
            status="pending",
            position_id=first.id,
            order_id=order_id,
            latency_ms=latency,
        )
        self.state._put_execution(record, execution, now)
