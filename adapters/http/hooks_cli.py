"""`tradingd hooks create|list|revoke`: manage header-less hook URLs in `<data dir>/hooks.json`,
the file a running daemon reads (it notices changes within a second). A hook is bound to a key
of `<data dir>/keys.json` with the `signals` scope."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tradingd.adapters.hooks.config import HooksSettings
from tradingd.adapters.hooks.secret import HOOK_PATH
from tradingd.adapters.hooks.store import TEMPLATES, HookStore, bound_key, hooks_path
from tradingd.adapters.http.auth import KeyStore, keys_path
from tradingd.adapters.http.record_cli import add_command_group, data_dir
from tradingd.adapters.http.text_rule import cli_label
from tradingd.adapters.timestamps import iso_ms


def _create(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    if bound_key(KeyStore(keys_path(directory)), args.key_id) is None:
        print(
            f"tradingd: no key {args.key_id!r} with the signals scope in {directory}"
            " (see `tradingd keys list`)",
            file=sys.stderr,
        )
        return 2
    hook, hook_id = HookStore(hooks_path(directory)).create(
        name=args.name,
        key_id=args.key_id,
        template=args.template,
        source=args.source,
        type=args.type,
        strength=args.strength,
        hmac=args.hmac,
        max_hooks=args.max_hooks,
    )
    print(f"id: {hook.id}")
    print(f"template: {hook.template}")
    print(f"path: {HOOK_PATH}{hook_id}")
    if hook.hmac_secret is not None:
        print(f"hmac secret: {hook.hmac_secret}")
    print("store the path (and secret) now: they are not shown again", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    store, keys = HookStore(hooks_path(directory)), KeyStore(keys_path(directory))
    for hook in store.list():
        usage = store.usage_of(hook.id)
        last = iso_ms(usage.last_used_at) if usage.last_used_at is not None else "never"
        fields = (
            hook.id,
            hook.name,
            hook.prefix,
            hook.key_id if bound_key(keys, hook.key_id) else f"{hook.key_id}(revoked:inactive)",
            hook.template,
            hook.source or "-",
            "hmac" if hook.hmac_secret is not None else "-",
            f"accepted={usage.accepted}",
            f"refused={usage.refused + usage.bad_signature}",
            f"last_used={last}",
        )
        print("\t".join(fields))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    HookStore(hooks_path(data_dir(args))).revoke(args.id)
    print(f"revoked {args.id}")
    return 0


def _strength(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 5):
        raise argparse.ArgumentTypeError("strength is an integer 1..5")
    return int(text)


def register(sub: Any) -> None:
    commands = add_command_group(
        sub,
        "hooks",
        "manage header-less hook URLs (docs/hooks.md)",
        (
            ("create", _create, "create a hook bound to a signals key (its path printed once)"),
            ("list", _list, "list hooks (no secrets) with their use"),
            ("revoke", _revoke, "revoke a hook by its record id"),
        ),
    )
    create = commands["create"]
    create.add_argument("--name", required=True, type=cli_label, help="a label (required)")
    create.add_argument("--key-id", required=True, help="a key with the signals scope (required)")
    create.add_argument(
        "--template",
        choices=TEMPLATES,
        default="tradingview",
        help="how bodies are read (default: tradingview)",
    )
    create.add_argument("--source", type=cli_label, help="set on every signal (default: none)")
    create.add_argument(
        "--type", type=cli_label, help="the type when the body gives none (default: none)"
    )
    create.add_argument(
        "--strength", type=_strength, help="1..5 when the body gives none (default: none)"
    )
    create.add_argument("--hmac", action="store_true", help="require X-Signature (default: off)")
    create.add_argument(
        "--max-hooks",
        type=int,
        default=HooksSettings().max_hooks,
        help="refuse when this many hooks exist (default: [hooks] max_hooks' default)",
    )
    commands["revoke"].add_argument(
        "id", help="the hook's record id (hook_...), as `hooks list` shows it"
    )
