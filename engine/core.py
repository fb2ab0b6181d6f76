"""The Engine: the single writer of all trading state.

Every public method is a synchronous transition: it validates, mutates, and appends events and
intents to buffers the runtime drains with `drain()`. Money moves only here, and a buy reserves
its quote (a sell marks its position `closing`) in the same transition that emits the order, so
no later signal or tick can spend or sell the same units twice."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Literal

import msgspec
from msgspec import Struct

from engine import events as ev
from engine.assets import KNOWN_DECIMALS, PEGGED_USD, normalize_quote, quote_mint, require_mint
from engine.config import AgentConfig, parse_atomic
from engine.errors import Conflict, InvariantViolation, NotFound, Unavailable, ValidationError
from engine.exits import Decision, decide
from engine.exposure import Exposure
from engine.ledger import Ledger
from engine.model import Agent, Balance, Execution, Fill, Order, Position, Signal, Tick, Trade
from engine.risk import filter_reason, limit_reason, size_buy
from engine.triggers import ExitIndex, NaiveScan, TriggerIndex

Clock = Callable[[], int]
SIGNAL_MEMORY = 200_000  # signal records kept for idempotency and GET /v1/signals
# Closed positions and trades kept in memory per agent; the full history is in Postgres.
CLOSED_KEPT = 1_000
TRADES_KEPT = 10_000


class Output(Struct):
    events: list[ev.Event]
    intents: list[ev.SubmitOrder]


class SignalRecord(Struct, kw_only=True):
    signal: Signal
    executions: dict[str, Execution]
    agents_matched: int = 0


class Engine:
    def __init__(
        self,
        clock: Clock,
        *,
        exit_index: Literal["indexed", "naive"] = "indexed",
        max_price_age_ms: int = 60_000,
        default_decimals: int = 6,
        node: str = "",
    ) -> None:
        self.clock = clock
        self.index: ExitIndex = TriggerIndex() if exit_index == "indexed" else NaiveScan()
        self.max_price_age_ms = max_price_age_ms
        self.default_decimals = default_decimals
        self.agents: dict[str, Agent] = {}
        self.ledger = Ledger()
        self.positions: dict[str, Position] = {}
        self.agent_positions: dict[str, dict[str, Position]] = {}  # live and recently closed
        self.live_positions: dict[str, dict[str, Position]] = {}  # not closed, in open order
        self.exposure: dict[str, Exposure] = {}
        self.closed_ids: dict[str, deque[str]] = {}  # agent -> closed position ids, oldest first
        self.orders: dict[str, Order] = {}
        self.trades: dict[str, list[Trade]] = {}
        self.prices: dict[str, Tick] = {}
        self.decimals: dict[str, int] = dict(KNOWN_DECIMALS)
        self.signals: OrderedDict[str, SignalRecord] = OrderedDict()
        self.signal_by_client: dict[str, str] = {}
        self.halted_buys = False
        # Set by adapters, not the operator: e.g. "store_unavailable" while Redis is down.
        self.buys_paused_reason: str | None = None
        self._events: list[ev.Event] = []
        self._intents: list[ev.SubmitOrder] = []
        self.id_seq = 0
        self._node = node

    # -- plumbing ---------------------------------------------------------------------------

    def drain(self) -> Output:
        out = Output(self._events, self._intents)
        self._events, self._intents = [], []
        return out

    def _id(self, prefix: str, now: int) -> str:
        self.id_seq += 1
        return f"{prefix}_{self._node}{now:x}{self.id_seq:06x}"

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _snapshot(self, position: Position) -> Position:
        self.refresh(position)
        return msgspec.structs.replace(position)

    def refresh(self, position: Position) -> Position:
        """Materialize the lazily kept peak and ratcheted stop of an open position."""
        if position.status in ("open", "closing") and position.entry_price_usd > 0:
            from engine.exits import ratcheted_stop_gain

            peak = self.index.peak_of(position)
            position.peak_price_usd = peak
            if position.config.stop_loss.enabled:
                position.stop_gain_pct = ratcheted_stop_gain(position, peak)
        return position

    def agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"unknown agent {agent_id!r}", {"agent_id": agent_id})
        return agent

    def position(self, position_id: str) -> Position:
        position = self.positions.get(position_id)
        if position is None:
            raise NotFound(f"unknown position {position_id!r}", {"position_id": position_id})
        return self.refresh(position)

    # -- prices -----------------------------------------------------------------------------

    def price_usd(self, mint: str) -> float | None:
        tick = self.prices.get(mint)
        if tick is not None:
            return tick.price_usd
        return 1.0 if mint in PEGGED_USD else None

    def quote_usd(self, quote: str) -> float | None:
        return self.price_usd(quote_mint(quote))

    def token_decimals(self, token: str) -> int:
        return self.decimals.get(token, self.default_decimals)

    def _learn_decimals(self, token: str, decimals: int | None) -> None:
        if decimals is not None and token not in self.decimals:
            self.decimals[token] = decimals

    # -- agents -----------------------------------------------------------------------------

    def create_agent(
        self,
        name: str,
        venue: str,
        config: AgentConfig,
        quote: str = "SOL",
        wallet_id: str | None = None,
        agent_id: str | None = None,
        quote_decimals: int | None = None,
    ) -> Agent:
        now = self.clock()
        quote = normalize_quote(quote)
        qmint = quote_mint(quote)
        decimals = quote_decimals if quote_decimals is not None else self.decimals.get(qmint)
        if decimals is None:
            raise ValidationError(
                "quote_decimals needed for a quote mint of unknown decimals", "$.quote"
            )
        agent_id = agent_id or self._id("agt", now)
        if agent_id in self.agents:
            raise Conflict(f"agent {agent_id!r} exists", {"agent_id": agent_id})
        agent = Agent(
            id=agent_id,
            name=name,
            venue=venue,
            quote=quote,
            quote_decimals=decimals,
            config=config,
            created_at=now,
            wallet_id=wallet_id,
        )
        self.agents[agent_id] = agent
        self.agent_positions[agent_id] = {}
        self.live_positions[agent_id] = {}
        self.exposure[agent_id] = Exposure()
        self.trades[agent_id] = []
        self.ledger.open_account(agent_id, quote, decimals)
        self._emit(
            ev.AgentCreated(
                ts=now,
                agent_id=agent_id,
                name=name,
                venue=venue,
                quote=quote,
                quote_decimals=decimals,
                config=config,
                wallet_id=wallet_id,
            )
        )
        return agent

    def rename_agent(self, agent_id: str, name: str) -> Agent:
        agent = self.agent(agent_id)
        agent.name = name
        self._emit(ev.AgentRenamed(ts=self.clock(), agent_id=agent_id, name=name))
        return agent

    def delete_agent(self, agent_id: str) -> None:
        self.agent(agent_id)
        if self.live_positions[agent_id]:
            raise Conflict("agent has open positions", {"agent_id": agent_id})
        if any(o.agent_id == agent_id for o in self.orders.values()):
            raise Conflict("agent has orders in flight", {"agent_id": agent_id})
        del self.agents[agent_id]
        self._emit(ev.AgentDeleted(ts=self.clock(), agent_id=agent_id))

    def update_config(
        self, agent_id: str, config: AgentConfig, apply_to_open: bool = False
    ) -> Agent:
        agent = self.agent(agent_id)
        now = self.clock()
        agent.config = config
        self._emit(
            ev.AgentConfigUpdated(
                ts=now, agent_id=agent_id, config=config, apply_to_open=apply_to_open
            )
        )
        if apply_to_open:
            for p in list(self.live_positions[agent_id].values()):
                if p.status in ("open", "closing"):
                    p.config = config
                    p.stop_gain_pct = None
                    p.tp_done = min(p.tp_done, len(config.take_profit.levels))
                    if p.status == "open" and p.in_flight is None:
                        self.index.rearm(p, now, fresh=True)
                    self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
        return agent

    def set_agent_status(self, agent_id: str, status: Literal["active", "paused"]) -> Agent:
        agent = self.agent(agent_id)
        if agent.status != status:
            agent.status = status
            now = self.clock()
            self._emit(
                ev.AgentPaused(ts=now, agent_id=agent_id)
                if status == "paused"
                else ev.AgentResumed(ts=now, agent_id=agent_id)
            )
        return agent

    def deposit(self, agent_id: str, asset: str, amount: int) -> Balance:
        agent = self.agent(agent_id)
        if amount <= 0:
            raise ValidationError("deposit amount must be positive", "$.amount")
        parse_atomic(str(amount), "$.amount")
        if asset.upper() in ("SOL", "USDC", "USDT"):
            asset = asset.upper()
        else:
            require_mint(asset, "$.asset")
        is_quote = quote_mint(asset) == quote_mint(agent.quote)
        asset = agent.quote if is_quote else asset
        decimals = agent.quote_decimals if is_quote else self.token_decimals(quote_mint(asset))
        bal = self.ledger.credit(agent_id, asset, decimals, amount)
        if is_quote:
            agent.deposited += amount
        now = self.clock()
        self._emit(
            ev.Deposited(ts=now, agent_id=agent_id, asset=asset, amount=amount, total=bal.total)
        )
        self._balance_changed(agent_id, bal, now)
        return bal

    def _forget_closed(self, p: Position) -> None:
        closed = self.closed_ids.setdefault(p.agent_id, deque())
        closed.append(p.id)
        if len(closed) > CLOSED_KEPT:
            old = closed.popleft()
            self.positions.pop(old, None)
            self.agent_positions[p.agent_id].pop(old, None)

    def _balance_changed(self, agent_id: str, bal: Balance, now: int) -> None:
        self._emit(
            ev.BalanceChanged(
                ts=now,
                agent_id=agent_id,
                asset=bal.asset,
                decimals=bal.decimals,
                total=bal.total,
                reserved=bal.reserved,
            )
        )

    # -- halt -------------------------------------------------------------------------------

    def set_halt(self, buys: bool, flatten: bool = False) -> list[str]:
        self.halted_buys = buys
        self._emit(ev.HaltChanged(ts=self.clock(), buys=buys, flatten=flatten))
        orders: list[str] = []
        if flatten:
            for p in self._sorted(self.positions.values()):
                if p.status == "open" and p.in_flight is None:
                    orders.append(self._sell(p, p.amount, "manual", p.peak_price_usd, None))
        return orders

    # -- ticks and the clock ----------------------------------------------------------------

    def on_tick(self, tick: Tick) -> None:
        """A new price. Older-than-known ticks for a token are ignored (feeds may reorder)."""
        last = self.prices.get(tick.token)
        if last is not None and tick.ts < last.ts:
            return
        self.prices[tick.token] = tick
        if tick.decimals is not None:
            self._learn_decimals(tick.token, tick.decimals)
        now = self.clock()
        candidates = list(self.index.on_price(tick.token, tick.price_usd))
        candidates.extend(self.index.due(now))
        if candidates:
            self._evaluate(candidates, now, tick.token)

    def on_clock(self) -> None:
        """Time passes without a price: max hold and stale-trade deadlines."""
        now = self.clock()
        due = list(self.index.due(now))
        if due:
            self._evaluate(due, now, None)

    @staticmethod
    def _sorted(positions: Iterable[Position]) -> list[Position]:
        return sorted(positions, key=lambda p: p.seq)

    def _evaluate(self, candidates: list[Position], now: int, token: str | None) -> None:
        seen: set[str] = set()
        for p in self._sorted(candidates):
            if p.id in seen:
                continue
            seen.add(p.id)
            if p.status != "open" or p.in_flight is not None:
                continue  # re-armed when its order settles
            tick = self.prices.get(p.token)
            if tick is None:
                continue
            decision = decide(p, tick.price_usd, now, self.index.peak_of(p), p.token == token)
            if decision.kind == "none":
                self.index.rearm(p, now, fresh=False)
            else:
                self._act(p, decision, tick.price_usd, now)

    def _act(self, p: Position, d: Decision, price: float, now: int) -> None:
        if d.kind == "exit":
            self._sell(p, d.sell_amount, d.reason, price, d.stop_price_usd)
        elif d.kind == "take_profit":
            if d.moon_bag_amount:
                p.moon_bag_amount = d.moon_bag_amount
                self._emit(ev.MoonBagSet(ts=now, position_id=p.id, amount=d.moon_bag_amount))
            if d.sell_amount > 0:
                p.tp_done += d.tp_levels
                self._sell(p, d.sell_amount, "take_profit", price, None, tp_levels=d.tp_levels)
            else:
                p.tp_done += d.tp_levels
                self.index.rearm(p, now, fresh=False)
                self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
        elif d.kind == "dca":
            self._dca(p, d.dca_level, price, now)

    # -- orders -----------------------------------------------------------------------------

    def _new_order(
        self,
        agent: Agent,
        p: Position,
        side: str,
        purpose: str,
        amount_in: int,
        reason: str,
        now: int,
        signal: Signal | None = None,
        tp_levels: int = 0,
    ) -> Order:
        ex = agent.config.execution
        order = Order(
            id=self._id("ord", now),
            agent_id=agent.id,
            position_id=p.id,
            side=side,  # type: ignore[arg-type]
            purpose=purpose,  # type: ignore[arg-type]
            token=p.token,
            amount_in=amount_in,
            reason=reason,
            created_at=now,
            venue=agent.venue,
            quote=agent.quote,
            quote_decimals=agent.quote_decimals,
            token_decimals=p.decimals,
            slippage_bps=ex.slippage_bps,
            fee_bps=ex.fee_bps,
            signal_id=signal.id if signal else None,
            expires_at=signal.expires_at if signal else None,
            max_price_impact_pct=agent.config.signals.max_price_impact_pct
            if side == "buy"
            else None,
            tp_levels=tp_levels,
        )
        self.orders[order.id] = order
        self._emit(ev.OrderSubmitted(ts=now, order=order))
        self._intents.append(ev.SubmitOrder(order))
        return order

    def _sell(
        self,
        p: Position,
        amount: int,
        reason: str,
        price: float,
        stop_price: float | None,
        tp_levels: int = 0,
    ) -> str:
        now = self.clock()
        if amount <= 0 or amount > p.amount:
            raise InvariantViolation(f"sell of {amount} from position {p.id} holding {p.amount}")
        agent = self.agents[p.agent_id]
        p.status = "closing"
        self._emit(
            ev.ExitTriggered(
                ts=now,
                position_id=p.id,
                agent_id=p.agent_id,
                token=p.token,
                reason=reason,
                price_usd=price,
                sell_amount=amount,
                stop_price_usd=stop_price,
            )
        )
        order = self._new_order(agent, p, "sell", "exit", amount, reason, now, tp_levels=tp_levels)
        p.in_flight = order.id
        self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
        return order.id

    def _dca(self, p: Position, level: int, price: float, now: int) -> None:
        agent = self.agents[p.agent_id]
        quote_price = self.quote_usd(agent.quote)
        buy_pct = p.config.dca.levels[level].buy_pct
        amount = 0
        if quote_price:
            value_usd = p.amount / 10**p.decimals * price
            amount = int(value_usd / quote_price * 10**agent.quote_decimals * buy_pct / 100)
        bal = self.ledger.balance(agent.id, agent.quote)
        spendable = bal.available - int(agent.config.sizing.min_reserve)
        amount = min(amount, spendable)
        self._emit(
            ev.DcaTriggered(
                ts=now, position_id=p.id, agent_id=agent.id, price_usd=price, level=level
            )
        )
        if amount <= 0:
            # Unfundable: the level is spent, or it would re-trigger on every tick.
            p.dca_count += 1
            p.last_dca_at = now
            self.index.rearm(p, now, fresh=False)
            self._emit(
                ev.Alert(
                    ts=now,
                    code="dca_unfunded",
                    message="DCA level skipped: no spendable quote",
                    details={"agent_id": agent.id, "position_id": p.id},
                )
            )
            self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
            return
        self.ledger.reserve(agent.id, agent.quote, amount)
        self.exposure[agent.id].commit(p.token, amount)
        order = self._new_order(agent, p, "buy", "dca", amount, "dca", now)
        p.in_flight = order.id
        self._balance_changed(agent.id, bal, now)

    def close_position(self, position_id: str, pct: float = 100.0, reason: str = "manual") -> str:
        p = self.position(position_id)
        if p.status != "open" or p.in_flight is not None:
            raise Conflict(
                f"position is {p.status}" + (" with an order in flight" if p.in_flight else ""),
                {"position_id": position_id, "status": p.status},
            )
        if not 0 < pct <= 100:
            raise ValidationError("pct must be in (0, 100]", "$.pct")
        amount = p.amount if pct >= 100 else p.amount * round(pct * 100) // 10000
        if amount <= 0:
            raise ValidationError("pct rounds to zero tokens", "$.pct")
        tick = self.prices.get(p.token)
        return self._sell(p, amount, reason, tick.price_usd if tick else p.entry_price_usd, None)

    def on_fill(self, fill: Fill) -> None:
        order = self.orders.pop(fill.order_id, None)
        if order is None:
            raise NotFound(f"no order in flight {fill.order_id!r}", {"order_id": fill.order_id})
        order.status = "filled"
        if order.side == "buy":
            self._settle_buy(order, fill)
        else:
            self._settle_sell(order, fill)

    def on_order_failed(self, order_id: str, reason: str) -> None:
        order = self.orders.pop(order_id, None)
        if order is None:
            raise NotFound(f"no order in flight {order_id!r}", {"order_id": order_id})
        order.status = "failed"
        now = self.clock()
        p = self.positions[order.position_id]
        self._emit(
            ev.OrderFailed(
                ts=now, order_id=order_id, agent_id=order.agent_id, position_id=p.id, reason=reason
            )
        )
        exposure = self.exposure[order.agent_id]
        if order.side == "buy":
            bal = self.ledger.release(order.agent_id, order.quote, order.amount_in)
            exposure.commit(p.token, -order.amount_in)
            self._balance_changed(order.agent_id, bal, now)
        p.in_flight = None
        if order.purpose == "entry":
            exposure.closed(p.token)
            p.status = "closed"
            p.closed_at = now
            del self.positions[p.id]
            del self.agent_positions[p.agent_id][p.id]
            del self.live_positions[p.agent_id][p.id]
            self._record_execution(order, "failed", reason, now)
            return
        if order.purpose == "dca":
            p.last_dca_at = now
        else:
            p.tp_done -= order.tp_levels
            p.status = "open"
        self.index.rearm(p, now, fresh=True)
        self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))

    def _trade(self, order: Order, fill: Fill, amount: int, quote_amount: int, now: int) -> None:
        trade = Trade(
            id=self._id("trd", now),
            agent_id=order.agent_id,
            position_id=order.position_id,
            side=order.side,
            token=order.token,
            amount=amount,
            quote_amount=quote_amount,
            price_usd=fill.price_usd,
            fee=fill.fee,
            venue=order.venue,
            venue_ref=fill.venue_ref,
            reason=order.reason,
            ts=now,
        )
        trades = self.trades[order.agent_id]
        trades.append(trade)
        if len(trades) > 2 * TRADES_KEPT:
            del trades[:TRADES_KEPT]
        self._emit(ev.OrderFilled(ts=now, order_id=order.id, trade=trade))

    def _settle_buy(self, order: Order, fill: Fill) -> None:
        now = self.clock()
        spent, got = fill.amount_in, fill.amount_out
        if spent > order.amount_in or spent < 0 or got <= 0:
            raise InvariantViolation(
                f"buy fill {fill} outside order {order.id} reservation {order.amount_in}"
            )
        bal = self.ledger.settle_buy(order.agent_id, order.quote, order.amount_in, spent)
        p = self.positions[order.position_id]
        self.exposure[order.agent_id].commit(p.token, spent - order.amount_in)
        p.in_flight = None
        self._trade(order, fill, got, spent, now)
        if order.purpose == "entry":
            p.amount = p.original_amount = got
            p.cost = spent
            p.entry_price_usd = fill.price_usd
            p.status = "open"
            p.opened_at = now
            self.index.add(p, now)
            self._emit(ev.PositionOpened(ts=now, position=self._snapshot(p)))
            self._record_execution(order, "filled", "", now)
        else:
            # Ratchet the stop at the old average first: S is a running max over (peak, entry).
            self.refresh(p)
            p.entry_price_usd = (p.entry_price_usd * p.amount + fill.price_usd * got) / (
                p.amount + got
            )
            p.amount += got
            p.original_amount += got
            p.cost += spent
            p.dca_count += 1
            p.last_dca_at = now
            self.index.rearm(p, now, fresh=True)
            self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
        self._balance_changed(order.agent_id, bal, now)

    def _settle_sell(self, order: Order, fill: Fill) -> None:
        now = self.clock()
        p = self.refresh(self.positions[order.position_id])
        sold, proceeds = fill.amount_in, fill.amount_out
        if sold <= 0 or sold > order.amount_in or sold > p.amount or proceeds < 0:
            raise InvariantViolation(
                f"sell fill {fill} outside order {order.id} for {order.amount_in}"
            )
        basis = p.cost if sold == p.amount else p.cost * sold // p.amount
        p.amount -= sold
        p.cost -= basis
        pnl = proceeds - basis
        p.realized_pnl += pnl
        p.moon_bag_amount = min(p.moon_bag_amount, p.amount)
        p.in_flight = None
        agent = self.agents[order.agent_id]
        exposure = self.exposure[agent.id]
        exposure.commit(p.token, -basis)
        bal = self.ledger.credit(agent.id, agent.quote, agent.quote_decimals, proceeds)
        self.ledger.realize(agent, pnl, now)
        self._trade(order, fill, sold, proceeds, now)
        if p.amount == 0:
            p.status = "closed"
            p.closed_at = now
            p.exit_reason = order.reason  # type: ignore[assignment]
            self.index.remove(p)
            exposure.closed(p.token)
            del self.live_positions[p.agent_id][p.id]
            agent.last_exit_at[p.token] = now
            self.ledger.count_round_trip(agent, p.realized_pnl)
            self._emit(ev.PositionClosed(ts=now, position=msgspec.structs.replace(p)))
            self._forget_closed(p)
        else:
            p.status = "open"
            self.index.rearm(p, now, fresh=True)
            self._emit(ev.PositionChanged(ts=now, position=self._snapshot(p)))
        self._balance_changed(agent.id, bal, now)

    # -- signals ----------------------------------------------------------------------------

    def on_signal(self, signal: Signal) -> tuple[SignalRecord, bool]:
        """Returns (record, duplicate). A repeated client id returns the first record."""
        if signal.client_id is not None:
            known = self.signal_by_client.get(signal.client_id)
            if known is not None and known in self.signals:
                return self.signals[known], True
        require_mint(signal.token, "$.token")
        now = self.clock()
        self._learn_decimals(signal.token, signal.decimals)
        record = SignalRecord(signal=signal, executions={})
        self.signals[signal.id] = record
        if signal.client_id is not None:
            self.signal_by_client[signal.client_id] = signal.id
        self._forget_old_signals()
        self._emit(
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
        for agent in list(self.agents.values()):
            tick = self.prices.get(signal.token)
            liquidity = tick.liquidity_usd if tick else None
            reason = filter_reason(
                agent.config, signal, liquidity, check_liquidity=signal.side == "buy"
            )
            if reason is not None:
                record.executions[agent.id] = Execution(
                    agent_id=agent.id, status="skipped", reason=reason
                )
                filtered[agent.id] = reason
                continue
            record.agents_matched += 1
            if signal.side == "buy":
                self._buy_for(agent, signal, record, now)
            else:
                self._sell_for(agent, signal, record, now)
        if filtered:
            self._emit(ev.SignalFiltered(ts=now, signal_id=signal.id, reasons=filtered))
        return record, False

    def _forget_old_signals(self) -> None:
        while len(self.signals) > SIGNAL_MEMORY:
            _, old = self.signals.popitem(last=False)
            if old.signal.client_id is not None:
                self.signal_by_client.pop(old.signal.client_id, None)

    def _skip(self, record: SignalRecord, agent_id: str, reason: str, now: int) -> None:
        execution = Execution(agent_id=agent_id, status="skipped", reason=reason)
        record.executions[agent_id] = execution
        self._emit(
            ev.SignalExecutionRecorded(
                ts=now,
                signal_id=record.signal.id,
                agent_id=agent_id,
                status="skipped",
                reason=reason,
            )
        )

    def _buy_reason(self, agent: Agent, signal: Signal, now: int) -> str | None:
        if now > signal.expires_at:
            return "expired"
        if self.halted_buys:
            return "halted"
        if self.buys_paused_reason is not None:
            return self.buys_paused_reason
        if agent.status != "active":
            return "agent_paused"
        tick = self.prices.get(signal.token)
        if tick is None:
            return "no_price"
        if now - tick.ts > self.max_price_age_ms:
            return "price_stale"
        if not self.quote_usd(agent.quote):
            return "no_quote_price"
        exposure = self.exposure[agent.id]
        return limit_reason(
            agent, signal.token, exposure.open, exposure.by_token[signal.token], now
        )

    def _buy_for(self, agent: Agent, signal: Signal, record: SignalRecord, now: int) -> None:
        reason = self._buy_reason(agent, signal, now)
        if reason is not None:
            return self._skip(record, agent.id, reason, now)
        bal = self.ledger.balance(agent.id, agent.quote)
        exposure = self.exposure[agent.id]
        amount, reason = size_buy(agent.config, bal.available, exposure.committed[signal.token])
        if reason is not None:
            return self._skip(record, agent.id, reason, now)
        if signal.token not in self.decimals:
            # Neither a tick nor the signal said: fix the default for this token, and say so.
            self.decimals[signal.token] = self.default_decimals
            self._emit(
                ev.Alert(
                    ts=now,
                    code="decimals_defaulted",
                    message="token decimals unknown: using the configured default",
                    details={"token": signal.token, "decimals": self.default_decimals},
                )
            )
        self.ledger.reserve(agent.id, agent.quote, amount)
        exposure.opened(signal.token, amount)
        p = Position(
            id=self._id("pos", now),
            seq=self.id_seq,
            agent_id=agent.id,
            token=signal.token,
            symbol=signal.symbol,
            decimals=self.token_decimals(signal.token),
            config=agent.config,
            signal_id=signal.id,
        )
        self.positions[p.id] = p
        self.agent_positions[agent.id][p.id] = p
        self.live_positions[agent.id][p.id] = p
        order = self._new_order(
            agent,
            p,
            "buy",
            "entry",
            amount,
            f"signal:{signal.type}" if signal.type else "signal",
            now,
            signal,
        )
        p.in_flight = order.id
        record.executions[agent.id] = Execution(
            agent_id=agent.id,
            status="pending",
            position_id=p.id,
            order_id=order.id,
            latency_ms=float(now - signal.received_at),
        )
        self._emit(
            ev.SignalExecutionRecorded(
                ts=now,
                signal_id=signal.id,
                agent_id=agent.id,
                status="pending",
                position_id=p.id,
                order_id=order.id,
                latency_ms=float(now - signal.received_at),
            )
        )
        self._balance_changed(agent.id, bal, now)

    def _sell_for(self, agent: Agent, signal: Signal, record: SignalRecord, now: int) -> None:
        first: Position | None = None
        order_id = None
        held = self.exposure[agent.id].by_token[signal.token] > 0
        for p in list(self.live_positions[agent.id].values()) if held else ():
            if p.token == signal.token and p.status == "open" and p.in_flight is None:
                tick = self.prices.get(p.token)
                oid = self._sell(
                    p, p.amount, "signal", tick.price_usd if tick else p.entry_price_usd, None
                )
                if first is None:
                    first, order_id = p, oid
        if first is None:
            return self._skip(record, agent.id, "no_open_position", now)
        latency = float(now - signal.received_at)
        record.executions[agent.id] = Execution(
            agent_id=agent.id,
            status="pending",
            position_id=first.id,
            order_id=order_id,
            latency_ms=latency,
        )
        self._emit(
            ev.SignalExecutionRecorded(
                ts=now,
                signal_id=signal.id,
                agent_id=agent.id,
                status="pending",
                position_id=first.id,
                order_id=order_id,
                latency_ms=latency,
            )
        )

    def _record_execution(self, order: Order, status: str, reason: str, now: int) -> None:
        if order.signal_id is None:
            return
        record = self.signals.get(order.signal_id)
        if record is None:
            return
        execution = record.executions.get(order.agent_id)
        if execution is None or execution.order_id != order.id:
            return
        execution.status = status  # type: ignore[assignment]
        execution.reason = reason
        self._emit(
            ev.SignalExecutionRecorded(
                ts=now,
                signal_id=order.signal_id,
                agent_id=order.agent_id,
                status=status,
                reason=reason,
                position_id=order.position_id,
                order_id=order.id,
                latency_ms=execution.latency_ms,
            )
        )

    # -- reads ------------------------------------------------------------------------------

    def unrealized_pnl(self, agent_id: str) -> int:
        agent = self.agent(agent_id)
        quote_price = self.quote_usd(agent.quote)
        total = 0
        if not quote_price:
            return 0
        for p in self.live_positions[agent_id].values():
            if p.status in ("open", "closing") and p.amount:
                tick = self.prices.get(p.token)
                if tick is not None:
                    value = int(
                        p.amount
                        / 10**p.decimals
                        * tick.price_usd
                        / quote_price
                        * 10**agent.quote_decimals
                    )
                    total += value - p.cost
        return total

    def require_no_buys(self) -> None:
        if self.halted_buys:
            raise Unavailable("buys are halted", {"halted": True})
