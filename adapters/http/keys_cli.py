"""`tradingd keys create|list|revoke`: manage API keys in `<data dir>/keys.json`, the file a
running daemon reads (it notices changes within a second)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tradingd.adapters.http.auth import SCOPES, KeyStore, keys_path
from tradingd.adapters.http.text_rule import cli_label
from tradingd.engine.errors import TradingdError


def _store(args: argparse.Namespace) -> KeyStore:
    data_dir = args.data_dir or os.environ.get("TRADINGD_DATA_DIR") or "./var"
    return KeyStore(keys_path(data_dir))


def _create(args: argparse.Namespace) -> int:
    scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
    unknown = scopes - SCOPES
    if unknown or not scopes:
        print(
            f"tradingd: scopes must be a comma list of {', '.join(sorted(SCOPES))}", file=sys.stderr
        )
        return 2
    key, raw = _store(args).create(args.name, scopes)
    print(f"id: {key.id}")
    print(f"scopes: {','.join(sorted(key.scopes))}")
    print(f"key: {raw}")
    print("store this key now: it is not shown again", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    for key in _store(args).list():
        print(f"{key.id}\t{key.name}\t{','.join(sorted(key.scopes))}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    _store(args).revoke(args.id)
    print(f"revoked {args.id}")
    return 0


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except TradingdError as exc:
            print(f"tradingd: {exc.message}", file=sys.stderr)
            return 1

    return run


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    for name, fn, help_text in (
        ("create", _create, "create a key (printed once)"),
        ("list", _list, "list keys (no secrets)"),
        ("revoke", _revoke, "revoke a key by id"),
    ):
        cmd = keys_sub.add_parser(name, help=help_text)
        cmd.add_argument("--data-dir", help="data directory (default: $TRADINGD_DATA_DIR or ./var)")
        cmd.set_defaults(func=_guarded(fn))
        if name == "create":
            cmd.add_argument(
                "--name", required=True, type=cli_label, help="a label for the key (required)"
            )
            cmd.add_argument(
                "--scopes",
                required=True,
                help="comma list of " + ",".join(sorted(SCOPES)) + " (required)",
            )
        elif name == "revoke":
            cmd.add_argument("id", help="the key's id, as `keys list` shows it")
