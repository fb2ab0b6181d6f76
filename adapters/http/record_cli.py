"""What the commands over a data dir's record files share (`tradingd keys`, `tradingd hooks`):
the data dir they act on, a group of subcommands each taking `--data-dir`, and a TradingdError
printed as one `tradingd: ...` line with exit status 1."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from tradingd.engine.errors import TradingdError

Command = Callable[[argparse.Namespace], int]


def data_dir(args: argparse.Namespace) -> str:
    return str(args.data_dir or os.environ.get("TRADINGD_DATA_DIR") or "./var")


def _guarded(fn: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except TradingdError as exc:
            print(f"tradingd: {exc.message}", file=sys.stderr)
            return 1

    return run


def add_command_group(
    sub: Any, name: str, help_text: str, commands: Iterable[tuple[str, Command, str]]
) -> dict[str, argparse.ArgumentParser]:
    """`tradingd <name> <command>` for each (command, function, help) of `commands`; returns
    the commands' parsers by name, for their own arguments."""
    group = sub.add_parser(name, help=help_text)
    group_sub = group.add_subparsers(dest=f"{name}_command", required=True)
    parsers: dict[str, argparse.ArgumentParser] = {}
    for command, fn, command_help in commands:
        cmd = group_sub.add_parser(command, help=command_help)
        cmd.add_argument("--data-dir", help="data directory (default: $TRADINGD_DATA_DIR or ./var)")
        cmd.set_defaults(func=_guarded(fn))
        parsers[command] = cmd
    return parsers
