"""Backtest driver: recorded ticks and signals through a fresh Engine whose clock is the record
time, every order filled at once by the paper venue. Same input, same output, to the byte. The
result and its text and JSON forms are in backtest_report.py, the equity and price series it
carries in backtest_series.py, its HTML form (`--report out.html`) in report_html.py.

`run_replay` is the library entry; `run_replay_cli` is `tradingd replay FILE... [--config FILE]`.
With a config, the engine is built from it as the daemon builds its own (`engine_options`), so a
recording made by the daemon (adapters/feeds/recorder.py) replays to the same decisions."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from fractions import Fraction
from importlib import resources
from typing import TextIO

import msgspec
from tradingd.adapters.app.backtest_report import (
    AgentReport,
    BacktestResult,
    EquityPoint,
    OpenPosition,
    PricePoint,
    PriceSeries,
    TradeRow,
    render_text,
    to_json_obj,
)
from tradingd.adapters.app.backtest_series import ReplayCurves, Sample, SeriesSampler
from tradingd.adapters.app.metrics_scrape import equity_atomic
from tradingd.adapters.app.settings import (
    AgentSpec,
    Settings,
    agent_config,
    engine_options,
    load_settings,
)
from tradingd.adapters.feeds.replay import (
    CancelRecord,
    ClockRecord,
    EntryNames,
    MarketRecord,
    Record,
    ReplayFormatError,
    SignalRecord,
    TickRecord,
    read_files,
    to_signal,
    to_tick,
)
from tradingd.adapters.venues.paper import settle_paper
from tradingd.engine import events as ev
from tradingd.engine.assets import CCXT_VENUE_PREFIX
from tradingd.engine.core import Engine
from tradingd.engine.errors import InvariantViolation, TradingdError, ValidationError
from tradingd.engine.model import Position, Trade
from tradingd.engine.money import market_value
from tradingd.engine.state import EngineOptions

log = logging.getLogger("tradingd.replay")

DEFAULT_DEPOSIT_UNITS = 100  # whole quote units credited to an agent without `paper_deposit`
MAX_SETTLE_ROUNDS = 1000  # fills that keep producing orders would be an engine bug


class ReplayClock:
    """The injected clock: the time of the record being applied."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class _Session:
    def __init__(self, engine: Engine, clock: ReplayClock, keep_events: bool) -> None:
        self.engine = engine
        self.clock = clock
        self.keep_events = keep_events
        self.events: list[ev.Event] = []
        self.kinds: Counter[str] = Counter()
        self.skipped: dict[str, Counter[str]] = {}
        self.failed: Counter[str] = Counter()
        self.trades: dict[str, list[TradeRow]] = {}
        self.symbols: dict[str, str] = {}  # token -> symbol, as signals name them
        self.count = 0
        self.curves = ReplayCurves(engine)
        # while applying the current record: tokens traded, tokens whose last price changed,
        # agents whose balance, positions or orders changed
        self.filled: dict[str, set[str]] = {}  # token -> agents that traded it in this record
        self.repriced: set[str] = set()
        self.touched: set[str] = set()
        self.venues: dict[str, str] = {}  # agent id -> venue its config names
        # what a cancel may name -> signal id: the dedupe window may have forgotten the client
        # id while the entry still rests (the daemon cancels by signal id)
        self.entry_names = EntryNames(lambda signal_id: signal_id in engine.entries_by_signal)

    def add_agent(self, spec: AgentSpec) -> None:
        engine = self.engine
        # Every agent trades on paper here, whatever venue the config names. An exchange
        # agent's market orders filled at the exchange's price: no paper slippage for it (its
        # `execution.fee_bps` stands for the exchange's fee), and its allocation is its deposit.
        config = agent_config(spec)
        exchange_agent = spec.venue.startswith(CCXT_VENUE_PREFIX)
        if exchange_agent:
            execution = msgspec.structs.replace(config.execution, slippage_bps=0)
            config = msgspec.structs.replace(config, execution=execution)
        try:
            agent = engine.create_agent(spec.name, "paper", config, spec.quote, None, spec.id)
        except TradingdError as exc:
            raise ValidationError(f"agent {spec.id!r}: {exc.message}") from None
        funded = spec.paper_deposit or (spec.allocation if exchange_agent else None)
        amount = int(funded) if funded else DEFAULT_DEPOSIT_UNITS * 10**agent.quote_decimals
        if amount > 0:
            engine.deposit(agent.id, agent.quote, amount)
        self.skipped[agent.id] = Counter()
        self.venues[agent.id] = spec.venue
        self.trades[agent.id] = []
        self.settle()

    def apply(self, record: Record) -> None:
        self.clock.now = record.ts
        self.filled.clear()
        self.repriced.clear()
        self.touched.clear()
        self.count += 1
        self.kinds[type(record).__name__] += 1
        if isinstance(record, ClockRecord):
            self.engine.on_clock()
        elif isinstance(record, CancelRecord):
            signal_id = self.entry_names.get(record.signal)
            if signal_id is not None:
                self.engine.cancel_resting(signal_id)
        elif isinstance(record, MarketRecord):
            # Raises ValidationError (other decimals than the market's known ones): the file
            # contradicts itself, and the replay stops naming the record.
            self.engine.set_instrument_rules(record.token, record.rules())
        elif isinstance(record, SignalRecord):
            if record.symbol:
                self.symbols.setdefault(record.token, record.symbol)
            try:
                signal_record, _ = self.engine.on_signal(
                    to_signal(record, record.ts, f"replay-{self.count}")
                )
                if record.entry is not None:
                    self.entry_names.add(record, signal_record.signal.id)
            except ValidationError as exc:  # the daemon answered 422 and went on: so do we
                log.warning(
                    "record %d: signal refused as the daemon refuses it: %s",
                    self.count,
                    exc.message,
                )
        else:
            self.engine.on_tick(to_tick(record, record.ts))
        self.settle()
        if isinstance(record, TickRecord):
            self.repriced.add(record.token)
        self.curves.after_record(record.ts, self.repriced, self.filled, self.touched)

    def settle(self) -> None:
        """Fill every order intent at once, until fills stop producing orders."""
        settle_paper(self.engine, self.clock.now, self._observe, MAX_SETTLE_ROUNDS)

    def _observe(self, events: list[ev.Event]) -> None:
        if self.keep_events:
            self.events.extend(events)
        for event in events:
            if isinstance(event, ev.SignalExecutionRecorded) and event.status == "skipped":
                self.skipped.setdefault(event.agent_id, Counter())[event.reason] += 1
            elif isinstance(event, ev.SignalFiltered):
                for agent_id, reason in event.reasons.items():
                    self.skipped.setdefault(agent_id, Counter())[reason] += 1
            elif isinstance(event, ev.OrderFilled):
                self.trades[event.trade.agent_id].append(self._trade_row(event.trade))
                self.filled.setdefault(event.trade.token, set()).add(event.trade.agent_id)
                self.touched.add(event.trade.agent_id)
            elif isinstance(event, ev.OrderFailed):
                self.failed[event.agent_id] += 1
                self.touched.add(event.agent_id)
            elif isinstance(event, ev.BalanceChanged):
                self.touched.add(event.agent_id)
            elif isinstance(event, ev.PositionOpened | ev.PositionChanged | ev.PositionClosed):
                self.touched.add(event.position.agent_id)
            elif isinstance(event, ev.PriceEvicted):
                self.repriced.add(event.token)
            elif isinstance(event, ev.Alert) and event.code == "breaker_tripped":
                # the account breakers ([breakers] of the config) and the agents' per-source
                # breakers (config source_breaker) apply here as in the daemon
                what = (
                    "source breaker tripped, the agent skips the source's buys"
                    if event.details.get("scope") == "source"
                    else "account breaker tripped, buys halted"
                )
                log.warning(
                    "record %d: %s: %s",
                    self.count,
                    what,
                    msgspec.json.encode(event.details).decode(),
                )

    def _trade_row(self, t: Trade) -> TradeRow:
        return TradeRow(
            ts=t.ts,
            side=t.side,
            token=t.token,
            symbol=self.symbols.get(t.token),
            amount=t.amount,
            decimals=self.engine.token_decimals(t.token),
            quote_amount=t.quote_amount,
            price_usd=t.price_usd,
            fee=t.fee,
            reason=t.reason,
            position_id=t.position_id,
        )

    def result(self, first_ts: int | None) -> BacktestResult:
        self.curves.finish()
        kinds = self.kinds
        return BacktestResult(
            records=sum(kinds.values()),
            ticks=kinds["TickRecord"],
            signals=kinds["SignalRecord"],
            clocks=kinds["ClockRecord"],
            cancels=kinds["CancelRecord"],
            first_ts=first_ts,
            last_ts=self.clock.now if kinds else None,
            agents=[self._report(agent_id, first_ts) for agent_id in self.engine.agents],
            events=self.events,
            prices=[
                PriceSeries(
                    token=token,
                    symbol=self.symbols.get(token),
                    points=[PricePoint(ts=p.ts, price_usd=p.value) for p in sampler.points()],
                )
                for token, sampler in sorted(self.curves.prices.items())
                if token in self.curves.traded
            ],
        )

    def _report(self, agent_id: str, first_ts: int | None) -> AgentReport:
        engine = self.engine
        agent = engine.agents[agent_id]
        equity = self.curves.equity.get(agent_id) or SeriesSampler[int](4)
        exposure = self.curves.exposure.get(agent_id)
        span = self.clock.now - first_ts if first_ts is not None else 0
        exposure_ms = exposure.total(self.clock.now) if exposure is not None else 0
        positions = engine.agent_positions[agent_id]
        open_positions = [
            self._open(p, agent.quote, agent.quote_decimals)
            for p in positions.values()
            if p.status in ("open", "closing") and p.amount > 0
        ]
        perf = agent.perf
        return AgentReport(
            agent_id=agent_id,
            name=agent.name,
            quote=agent.quote,
            quote_decimals=agent.quote_decimals,
            deposited=agent.deposited,
            balance=engine.ledger.balance(agent_id, agent.quote).total,
            trades=self.trades[agent_id],
            realized_pnl=perf.realized_pnl,
            round_trips=perf.trades,
            wins=perf.wins,
            losses=perf.losses,
            win_rate=perf.wins / perf.trades if perf.trades else None,
            max_drawdown_pct=perf.max_drawdown_pct,
            open_positions=open_positions,
            unrealized_pnl=sum(p.unrealized_pnl or 0 for p in open_positions),
            signals_skipped=dict(sorted(self.skipped.get(agent_id, Counter()).items())),
            orders_failed=self.failed[agent_id],
            entries_resting=len(engine.books[agent_id].entries),
            venue=self.venues.get(agent_id, agent.venue),
            config=msgspec.to_builtins(agent.config),
            final_equity=equity_atomic(engine, agent, engine.quote_usd(agent.quote)),
            equity_max_drawdown_pct=equity.max_drawdown_pct(),
            exposure_ms=exposure_ms,
            exposure_pct=exposure_ms * 100 / span if span > 0 else None,
            equity_curve=[_equity_point(s) for s in equity.points()],
        )

    def _open(self, p: Position, quote: str, quote_decimals: int) -> OpenPosition:
        price = self.engine.price_usd(p.token)
        quote_usd = self.engine.quote_usd(quote)
        value = market_value(p.amount, p.decimals, price, quote_usd, quote_decimals)
        pnl = None if value is None else value - p.cost
        return OpenPosition(
            position_id=p.id,
            token=p.token,
            symbol=p.symbol or self.symbols.get(p.token),
            amount=p.amount,
            decimals=p.decimals,
            cost=p.cost,
            moon_bag_amount=p.moon_bag_amount,
            last_price_usd=price,
            unrealized_pnl=pnl,
        )


def _equity_point(s: Sample[int]) -> EquityPoint:
    drawdown = float(Fraction(s.peak - s.value) * 100 / s.peak) if s.peak > 0 else 0.0
    return EquityPoint(ts=s.ts, equity=s.value, drawdown_pct=drawdown)


def run_replay(
    records: Iterable[Record],
    agent_specs: Sequence[AgentSpec],
    *,
    max_price_age_ms: int = 60_000,
    default_decimals: int = 6,
    keep_events: bool = False,
    engine_options: EngineOptions | None = None,
) -> BacktestResult:
    """Run `records` (in ts order, e.g. from `read_records`) for `agent_specs` in a fresh Engine.
    Agents are created and funded at the first record's time; every order fills on paper at once.
    `engine_options` (settings.engine_options of a daemon config) replace the two defaults, so
    a replay decides as the daemon with that config did."""
    stream = iter(records)
    first = next(stream, None)
    clock = ReplayClock(first.ts if first is not None else 0)
    options = engine_options or EngineOptions(
        max_price_age_ms=max_price_age_ms, default_decimals=default_decimals
    )
    engine = Engine(clock, **options)
    session = _Session(engine, clock, keep_events)
    for spec in agent_specs:
        session.add_agent(spec)
    if first is not None:
        session.apply(first)
        for record in stream:
            session.apply(record)
    return session.result(first.ts if first is not None else None)


# -- the command line -----------------------------------------------------------------------


def sample_agents_path() -> str:
    """The bundled sample agents (TOML), installed with the package."""
    return str(resources.files("tradingd.adapters") / "samples" / "sample_agents.toml")


def sample_replay_path() -> str:
    """The bundled sample replay file (docs/replay-format.md), installed with the package: what
    `tradingd replay --sample` runs, wherever the wheel put it."""
    return str(resources.files("tradingd.adapters") / "samples" / "sample.jsonl")


def load_replay_settings(config_path: str | None) -> Settings:
    """A daemon config file with `[[agents]]`; the packaged sample agents without one."""
    settings = load_settings(config_path or sample_agents_path(), {})
    if not settings.agents:
        raise ValidationError(f"{config_path}: no [[agents]] to replay", "$.agents")
    return settings


def load_agent_specs(config_path: str | None) -> list[AgentSpec]:
    """`[[agents]]` of a daemon config file; the packaged sample agents without one."""
    return load_replay_settings(config_path).agents


def _report_clash(report: str | None, inputs: Sequence[str]) -> str | None:
    """The input file `report` names (the same file: through a symlink or a hard link too),
    if any: writing the report there would destroy the recording before it is replayed."""
    if not report or not os.path.exists(report):
        return None
    for path in inputs:
        with contextlib.suppress(OSError):  # a missing input is the replay's own error
            if os.path.samefile(report, path):
                return path
    return None


def run_replay_cli(
    files: str | Sequence[str],
    config_path: str | None,
    out: TextIO,
    *,
    as_json: bool = False,
    report: str | None = None,
    report_mode: int | None = None,
) -> int:
    """Replay `files` in the order given as one recording (a recorder's rotated files, sorted
    by name). Exit code 0 with the report on `out` (and, with `report`, the HTML report written
    to that path); 2 with one line on stderr for a bad file or config or an unwritable report."""
    paths = [files] if isinstance(files, str) else list(files)
    clash = _report_clash(report, [*paths, *([config_path] if config_path else [])])
    if clash is not None:
        print(
            f"tradingd replay: --report {report} is the input file {clash}: refusing to "
            "overwrite it",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_replay_settings(config_path)
        result = run_replay(
            read_files(paths), settings.agents, engine_options=engine_options(settings)
        )
    except InvariantViolation:
        raise  # an engine bug, not a bad input: fail loudly with the traceback
    except TradingdError as exc:
        path = exc.details.get("path", "$")
        where = f" (at {path})" if path != "$" and not isinstance(exc, ReplayFormatError) else ""
        print(f"tradingd replay: {exc.message}{where}", file=sys.stderr)
        return 2
    if report is not None:
        from tradingd.adapters.app.report_html import write_report

        try:
            write_report(report, result, paths, config_path, report_mode)
        except OSError as exc:
            print(f"tradingd replay: cannot write the report {report}: {exc}", file=sys.stderr)
            return 2
    if as_json:
        out.write(msgspec.json.encode(to_json_obj(result)).decode() + "\n")
    else:
        shown = paths[0] if len(paths) == 1 else f"{paths[0]} .. {paths[-1]} ({len(paths)} files)"
        out.write(render_text(result, shown))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tradingd.adapters.app.backtest", description=__doc__
    )
    parser.add_argument(
        "files", nargs="+", help="replay files (JSON lines, docs/replay-format.md), in order"
    )
    parser.add_argument("--config", help="TOML config with [[agents]] (default: the sample agents)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--report", metavar="OUT.html", help="also write the HTML report there")
    args = parser.parse_args(argv)
    return run_replay_cli(
        args.files, args.config, sys.stdout, as_json=args.json, report=args.report
    )


if __name__ == "__main__":
    sys.exit(main())
