"""The `tradingd` command line: run, record, replay, check-config, keys, migrate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from tradingd.adapters.app.version import VERSION
from tradingd.engine.errors import TradingdError

CONFIG_EXIT = 2  # a config `check-config` and `run` refuse (argparse's usage errors use 2 too)


def _port(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (usage error, exit 2, otherwise)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0..65535)")
    return port


def config_refused(exc: TradingdError) -> int:
    """The one way `run` and `check-config` report a bad config: one line on stderr."""
    print(f"tradingd: invalid config: {exc.message}", file=sys.stderr)
    return CONFIG_EXIT


def _run(args: argparse.Namespace, record_to: str | None = None) -> int:
    from tradingd.adapters.app import logs
    from tradingd.adapters.app.daemon import Daemon
    from tradingd.adapters.app.settings import load_cli_settings

    try:
        settings = load_cli_settings(args.config, args.data_dir)
    except TradingdError as exc:
        return config_refused(exc)
    if record_to is not None:
        settings.feeds.record.enabled = True
        settings.feeds.record.path = os.path.abspath(record_to)
    if getattr(args, "role", None):
        settings.cluster.role = args.role
    cluster = settings.cluster
    if (
        getattr(args, "shards", None) is not None
        and args.shards > 1
        and getattr(args, "shard", None) is None
        and cluster.shards <= 1
    ):  # the config names no shard either: every process would silently be shard 0
        print(
            f"tradingd: --shards {args.shards} needs --shard I too (which shard this process "
            "is, 0..shards-1), or [cluster] shard in the config",
            file=sys.stderr,
        )
        return CONFIG_EXIT
    if getattr(args, "shards", None) is not None:
        cluster.shards = args.shards
    if getattr(args, "shard", None) is not None:
        cluster.shard = args.shard
    if not (1 <= cluster.shards <= 64 and 0 <= cluster.shard < cluster.shards):
        print(
            f"tradingd: invalid config: shard {cluster.shard} of {cluster.shards}: shards is "
            "1..64 and shard 0..shards-1 (--shard, --shards or [cluster] shard, shards)",
            file=sys.stderr,
        )
        return CONFIG_EXIT
    if cluster.shards > 1 and not (
        settings.store.kind == "external"
        and settings.store.redis_url
        and settings.store.database_url
    ):
        print(
            "tradingd: agent shards ([cluster] shards > 1) need the external store: set "
            "REDIS_URL and DATABASE_URL (or [store] redis_url and database_url) shared by every "
            f"shard; the {settings.store.kind} store is this process's own",
            file=sys.stderr,
        )
        return CONFIG_EXIT
    if settings.cluster.wanted() is not None and not (
        settings.store.kind == "external"
        and settings.store.redis_url
        and settings.store.database_url
    ):
        print(
            "tradingd: a cluster role (--role, or [cluster] lease) needs the external store: "
            "set REDIS_URL and DATABASE_URL (or [store] redis_url and database_url) shared by "
            f"every process of the pair; the {settings.store.kind} store is this process's own",
            file=sys.stderr,
        )
        return CONFIG_EXIT
    if args.host:
        settings.http.host = args.host
    if args.port is not None:
        settings.http.port = args.port
    demo = (
        settings.demo
        and not args.no_demo
        and not (args.config or os.environ.get("TRADINGD_CONFIG"))
    )
    if args.log_format:
        settings.log_format = args.log_format
    in_use = logs.configure(settings.log_level, settings.log_format, settings.secret_values())
    settings.log_format = in_use  # type: ignore[assignment]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        runner = asyncio.run
    daemon = Daemon(settings, demo=demo)
    try:
        from tradingd.adapters.http.server import serve_control_port
    except ImportError:
        serve_control_port = None  # type: ignore[assignment]
    return runner(daemon.run(serve_control_port))


def _record(args: argparse.Namespace) -> int:
    """`tradingd record --out FILE`: `run`, with `[feeds.record]` on into FILE."""
    return _run(args, record_to=args.out)


def _check_config(args: argparse.Namespace) -> int:
    """Validates what `run --config FILE` would run here (the environment included)."""
    from tradingd.adapters.app.settings import load_settings

    path = args.file or args.config_file
    if path is None or (args.file and args.config_file):
        print("tradingd check-config: give the config file once: FILE or --config FILE",
              file=sys.stderr)  # fmt: skip
        return CONFIG_EXIT
    try:
        settings = load_settings(path)
    except TradingdError as exc:
        return config_refused(exc)
    print(
        f"ok: {len(settings.agents)} agent(s), port {settings.http.port}, store {settings.store.kind}"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from tradingd.adapters.app.backtest import run_replay_cli, sample_replay_path
    from tradingd.adapters.app.data_dir import OWNER_ONLY_UMASK

    if args.sample == bool(args.files):
        print("tradingd replay: give a FILE or --sample (not both)", file=sys.stderr)
        return 2
    files = [sample_replay_path()] if args.sample else args.files
    # The report is a page to share (mail it, publish it): it follows the user's umask like any
    # file they create, not the 0600 main() sets for the data dir's secrets.
    umask = getattr(args, "user_umask", OWNER_ONLY_UMASK)
    return run_replay_cli(
        files,
        args.config,
        sys.stdout,
        as_json=args.json,
        report=args.report,
        report_mode=0o666 & ~umask,
    )


# Defaults that live in the settings schema; the help shows them so nobody has to read code.
DATA_DIR_HELP = (
    "data directory: embedded databases, keys, wallets "
    "(default: $TRADINGD_DATA_DIR, else data_dir of the config, else ./var)"
)
CONFIG_HELP = "TOML config file (default: $TRADINGD_CONFIG, else the built-in paper profile)"


def _add_run_options(run: argparse.ArgumentParser) -> None:
    """The options of `run`, which `record` shares."""
    run.add_argument("--config", help=CONFIG_HELP)
    run.add_argument(
        "--host", help="control port address (default: [http] host of the config, 127.0.0.1)"
    )
    run.add_argument(
        "--port",
        type=_port,
        help="control port; 0 picks a free one (default: [http] port of the config, 8080)",
    )
    run.add_argument("--data-dir", help=DATA_DIR_HELP)
    run.add_argument(
        "--role",
        choices=("active", "standby"),
        help="hot standby (docs/cluster.md): take part in the lease in Redis; a standby serves "
        "/health and waits for the lease, then recovers and opens intake. Needs the external "
        "store (default: no lease, unless [cluster] lease = true)",
    )
    run.add_argument(
        "--shard",
        type=int,
        metavar="I",
        help="agent shards (docs/cluster.md): this process is shard I of --shards "
        "(default: [cluster] shard, 0)",
    )
    run.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="agent shards: how many shards share the intake (1..64; default: [cluster] "
        "shards, 1 = a single process). More than one needs the external store",
    )
    run.add_argument(
        "--log-format",
        choices=("auto", "pretty", "json"),
        help="log lines: pretty (one readable line per event) or json (one object per line) "
        "(default: $TRADINGD_LOG_FORMAT, else log_format of the config, else "
        "auto: pretty on a terminal, json otherwise)",
    )
    run.add_argument(
        "--no-demo",
        action="store_true",
        help="no demo signals, and no demo agent created; one an earlier run created stays "
        "(default: off)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingd", description="trading-engine daemon")
    parser.add_argument("--version", action="version", version=f"tradingd {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    _add_run_options(run)
    run.set_defaults(func=_run)
    record = sub.add_parser(
        "record",
        help="run the daemon as `run` does, recording every tick, signal and clock turn it "
        "receives into replay files for `tradingd replay`",
    )
    record.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="where to record: FILE's directory, and names from FILE's stem "
        "(rec.jsonl -> rec-2026-11-30T201500Z.jsonl, a new file per [feeds.record] max_bytes "
        "and UTC day); relative to the current directory",
    )
    _add_run_options(record)
    record.set_defaults(func=_record)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", nargs="?", help="the TOML config file to validate")
    check.add_argument(
        "--config",
        dest="config_file",
        help="the same, as `run` and `replay` take it (default: the positional FILE)",
    )
    check.set_defaults(func=_check_config)
    replay = sub.add_parser("replay", help="backtest: run a recorded ticks/signals file")
    replay.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="JSON-lines file of ticks and signals; several are one recording, in the order "
        "given (a recording's rotated files sort by name in time order)",
    )
    replay.add_argument(
        "--sample",
        action="store_true",
        help="replay the bundled sample file (installed with the package) instead of a FILE (default: off)",
    )
    replay.add_argument("--config", help="TOML config with [[agents]] (default: the sample agents)")
    replay.add_argument(
        "--json", action="store_true", help="print the result as JSON (default: a text report)"
    )
    replay.add_argument(
        "--report",
        metavar="OUT.html",
        help="also write the result as one self-contained HTML page there: equity, drawdown "
        "and price charts with each trade, the summary and the config; opens offline "
        "(docs/backtest-report.md) (default: none)",
    )
    replay.set_defaults(func=_replay)
    for extra in (
        "tradingd.adapters.http.keys_cli",
        "tradingd.adapters.http.hooks_cli",
        "tradingd.adapters.store.cli",
        "tradingd.adapters.solana.wallet_cli",
        "tradingd.adapters.cluster.status",
    ):
        try:
            module = __import__(extra, fromlist=["register"])
        except ImportError:
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tradingd.adapters.app.data_dir import OWNER_ONLY_UMASK

    # every file a tradingd command or its servers write: 0600, except a replay's --report
    user_umask = os.umask(OWNER_ONLY_UMASK)
    args = build_parser().parse_args(argv)
    args.user_umask = user_umask
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
