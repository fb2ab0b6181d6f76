"""`tradingd wallet create|import|list`: manage the encrypted keystore under the data dir.

The passphrase comes from TRADINGD_WALLET_PASSPHRASE or an interactive prompt; an imported
secret from --secret-file (never a command-line argument, which `ps` would show)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from tradingd.adapters.http.text_rule import cli_label
from tradingd.adapters.solana.keystore import Keystore
from tradingd.engine.errors import TradingdError

DATA_DIR_HELP = "data directory (default: $TRADINGD_DATA_DIR or ./var)"


def _data_dir(args: argparse.Namespace) -> str:
    return args.data_dir or os.environ.get("TRADINGD_DATA_DIR", "./var")


def _passphrase(confirm: bool) -> str:
    env = os.environ.get("TRADINGD_WALLET_PASSPHRASE")
    if env:
        return env
    first = getpass.getpass("wallet passphrase: ")
    if confirm and getpass.getpass("repeat passphrase: ") != first:
        raise SystemExit("tradingd: passphrases differ")
    return first


def _run(args: argparse.Namespace) -> int:
    ks = Keystore(_data_dir(args))
    try:
        if args.wallet_command == "list":
            for w in ks.list():
                print(f"{w.id}\t{w.public_key}\t{w.name}")
            return 0
        if args.wallet_command == "create":
            info = ks.create(args.name, _passphrase(confirm=True), args.id)
        else:
            secret = Path(args.secret_file).read_text() if args.secret_file else sys.stdin.read()
            info = ks.import_secret(args.name, _passphrase(confirm=True), secret, args.id)
    except TradingdError as exc:
        print(f"tradingd: {exc.message}", file=sys.stderr)
        return 1
    print(f"{info.id}\t{info.public_key}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    wallet = sub.add_parser("wallet", help="manage encrypted Solana wallets")
    wsub = wallet.add_subparsers(dest="wallet_command", required=True)
    for name in ("create", "import"):
        p = wsub.add_parser(name, help=f"{name} a keypair, sealed with a passphrase")
        p.add_argument(
            "--name", required=True, type=cli_label, help="a label for the wallet (required)"
        )
        p.add_argument("--id", help="wallet id (default: generated)")
        p.add_argument("--data-dir", help=DATA_DIR_HELP)
        if name == "import":
            p.add_argument(
                "--secret-file", help="file with the base58 or JSON-array secret (default: stdin)"
            )
    lst = wsub.add_parser("list", help="list wallets (public keys only)")
    lst.add_argument("--data-dir", help=DATA_DIR_HELP)
    wallet.set_defaults(func=_run)
