"""Logs a person reads on a terminal (`tradingd run --log-format pretty`, or auto on a TTY).

`PrettyFormatter` renders one line per record with rich: local time, level, the agent, the
message, then the record's other fields as `name=value`. It sits behind the same `RedactSecrets`
filter as the JSON formatter, so it only ever sees redacted text. `TradeText` turns the trading
events the event log writes into sentences: the agent's name, the token's symbol, amounts in
decimal units with their asset (adapters/units.py), prices in USD, the exit reason."""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.console import Console
from rich.text import Text
from tradingd.adapters import units
from tradingd.adapters.app.logs import _STD, _redact
from tradingd.engine import events as ev
from tradingd.engine.assets import QUOTE_SYMBOLS
from tradingd.engine.state import EngineState

_LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "bold yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}
_MINT_SYMBOLS = {mint: symbol for symbol, mint in QUOTE_SYMBOLS.items()}
_SHOWN = frozenset({"agent"})  # extras that have their own column


class PrettyFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL agent message  name=value ...`; colour only when `color`."""

    def __init__(self, color: bool) -> None:
        super().__init__()
        self.console = Console(
            color_system="standard" if color else None,
            force_terminal=color,
            no_color=None if color else True,  # None: rich honours $NO_COLOR
            width=1_000_000,  # one line per record: the terminal wraps, not rich
            soft_wrap=True,
            highlight=False,
            markup=False,
            emoji=False,
        )

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = Text()
        line.append(f"{clock}.{int(record.msecs):03d} ", style="dim")
        line.append(f"{record.levelname:<7}", style=_LEVEL_STYLES.get(record.levelname, ""))
        agent = getattr(record, "agent", None)
        if agent:
            line.append(f" {agent}", style="bold cyan")
        line.append(f" {record.getMessage()}")
        for name, value in vars(record).items():
            if name in _STD or name in _SHOWN or name.startswith("_"):
                continue
            line.append(f"  {name}={_redact(name, value)}", style="dim")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line.append("\n" + record.exc_text, style="red")
        if record.stack_info:
            line.append("\n" + record.stack_info)
        with self.console.capture() as capture:
            self.console.print(line, end="")
        return capture.get()


class TradeText:
    """Sentences for the trading log, with names, symbols and decimals looked up in the engine
    (read on the event loop, between engine calls)."""

    def __init__(self, engine: EngineState) -> None:
        self.engine = engine

    def agent(self, agent_id: str) -> str:
        agent = self.engine.agents.get(agent_id)
        return agent.name if agent is not None else agent_id

    def quote(self, agent_id: str, atomic: int) -> str:
        agent = self.engine.agents.get(agent_id)
        if agent is None:
            return f"{atomic} (atomic quote units)"
        return units.amount(atomic, agent.quote_decimals, _label(agent.quote))

    def token(self, mint: str, atomic: int, position_id: str | None = None) -> str:
        symbol, decimals = self.token_info(mint, position_id)
        return units.amount(atomic, decimals, symbol)

    def token_info(self, mint: str, position_id: str | None = None) -> tuple[str, int]:
        position = self.engine.positions.get(position_id) if position_id else None
        if position is not None:
            return position.symbol or _label(mint), position.decimals
        return _label(mint), self.engine.token_decimals(mint)

    def describe(self, e: ev.Event) -> tuple[int, str, dict[str, Any]] | None:
        """(level, sentence, fields) of one logged event; None for events not logged."""
        if isinstance(e, ev.OrderFilled):
            t = e.trade
            verb = "bought" if t.side == "buy" else "sold"
            return (
                logging.INFO,
                f"{verb} {self.token(t.token, t.amount, t.position_id)} for "
                f"{self.quote(t.agent_id, t.quote_amount)} at {units.usd(t.price_usd)} "
                f"({t.reason})",
                {"agent": self.agent(t.agent_id), "position": t.position_id},
            )
        if isinstance(e, ev.ExitTriggered):
            symbol, _ = self.token_info(e.token, e.position_id)
            stop = f", stop {units.usd(e.stop_price_usd)}" if e.stop_price_usd else ""
            return (
                logging.INFO,
                f"exit {e.reason} on {symbol} at {units.usd(e.price_usd)}{stop}: selling "
                f"{self.token(e.token, e.sell_amount, e.position_id)}",
                {"agent": self.agent(e.agent_id), "position": e.position_id},
            )
        if isinstance(e, ev.DcaTriggered):
            position = self.engine.positions.get(e.position_id)
            symbol = self.token_info(position.token, e.position_id)[0] if position else "?"
            return (
                logging.INFO,
                f"DCA level {e.level} on {symbol} at {units.usd(e.price_usd)}",
                {"agent": self.agent(e.agent_id), "position": e.position_id},
            )
        if isinstance(e, ev.OrderFailed):
            return (
                logging.WARNING,
                f"order failed: {e.reason}",
                {"agent": self.agent(e.agent_id), "position": e.position_id, "order": e.order_id},
            )
        if isinstance(e, ev.PositionClosed):
            p = e.position
            pnl = self.quote(p.agent_id, p.realized_pnl)
            return (
                logging.INFO,
                f"closed {p.symbol or _label(p.token)} position ({p.exit_reason}), "
                f"realized PnL {'+' if p.realized_pnl > 0 else ''}{pnl}",
                {"agent": self.agent(p.agent_id), "position": p.id},
            )
        if isinstance(e, ev.HaltChanged):
            return (
                logging.WARNING,
                f"halt changed: buys {'halted' if e.buys else 'allowed'}"
                f"{', flattening' if e.flatten else ''}",
                {},
            )
        if isinstance(e, ev.Alert):
            fields = {("detail_" + k if k in _STD else k): v for k, v in e.details.items()}
            return logging.WARNING, e.message, {"code": e.code, **fields}
        return None


def _label(mint_or_symbol: str) -> str:
    return _MINT_SYMBOLS.get(mint_or_symbol) or units.short_mint(mint_or_symbol)
