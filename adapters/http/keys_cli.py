"""`tradingd keys create|list|revoke`: manage API keys in `<data dir>/keys.json`, the file a
running daemon reads (it notices changes within a second)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tradingd.adapters.http.auth import SCOPES, KeyStore, keys_path
from tradingd.adapters.http.record_cli import add_command_group, data_dir
from tradingd.adapters.http.text_rule import cli_label


def _store(args: argparse.Namespace) -> KeyStore:
    return KeyStore(keys_path(data_dir(args)))


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


def register(sub: Any) -> None:
    commands = add_command_group(
        sub,
        "keys",
        "manage API keys",
        (
            ("create", _create, "create a key (printed once)"),
            ("list", _list, "list keys (no secrets)"),
            ("revoke", _revoke, "revoke a key by id"),
        ),
    )
    create = commands["create"]
    create.add_argument(
        "--name", required=True, type=cli_label, help="a label for the key (required)"
    )
    create.add_argument(
        "--scopes",
        required=True,
        help="comma list of " + ",".join(sorted(SCOPES)) + " (required)",
    )
    commands["revoke"].add_argument("id", help="the key's id, as `keys list` shows it")
