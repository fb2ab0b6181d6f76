"""`tradingd run`: the composition root, the one place that knows every part. It builds the
engine, venues, runtime, store, feeds, keys, metrics and WebSocket hub and subscribes them to the
runtime; no part attaches itself. Start-up order: settings -> store -> engine state -> venues ->
feeds -> control port -> ready; shutdown in reverse with a drain."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradingd.adapters.app import systemd
from tradingd.adapters.app.data_dir import secure_data_dir
from tradingd.adapters.app.event_log import EventLog
from tradingd.adapters.app.exchanges import ExchangeAccounts
from tradingd.adapters.app.first_price import FirstPrice
from tradingd.adapters.app.live_venues import LiveVenues
from tradingd.adapters.app.runtime import Runtime
from tradingd.adapters.app.settings import Settings, agent_config, engine_options
from tradingd.adapters.app.version import VERSION
from tradingd.adapters.cluster.shards import (
    ReshardInterrupted,
    ShardCountMismatch,
    ShardCountUnknown,
)
from tradingd.adapters.feeds.demo import DEMO_AGENT_ID, DemoSignals, demo_agent_config
from tradingd.adapters.feeds.synthetic import SyntheticFeed
from tradingd.adapters.http.auth import BOOTSTRAP_ENV, KeyStore, admin_key_path, keys_path
from tradingd.adapters.notify.channel_file import ChannelFile, channels_path, hide_in_logs
from tradingd.adapters.notify.config import channel_secrets
from tradingd.adapters.solana.keystore import Keystore
from tradingd.adapters.timestamps import wall_clock_ms
from tradingd.adapters.venues import PAPER
from tradingd.adapters.venues.ccxt.markets import MarketRegistry
from tradingd.adapters.venues.paper import PaperVenue
from tradingd.engine import events as ev
from tradingd.engine.core import Engine
from tradingd.engine.errors import TradingdError, Unavailable
from tradingd.engine.model import Tick
from tradingd.engine.ports import Feed, HealthRegistry, LiveFeed, Store

if TYPE_CHECKING:
    from tradingd.adapters.cluster.feed_leader import FeedLeaders
    from tradingd.adapters.cluster.forward import Forwarder
    from tradingd.adapters.cluster.intake import ShardIntake
    from tradingd.adapters.cluster.role import ClusterRole
    from tradingd.adapters.cluster.shared_keys import SharedKeys
    from tradingd.adapters.feeds.recorder import Recorder
    from tradingd.adapters.http.ws import WsHub
    from tradingd.adapters.metrics import Metrics
    from tradingd.adapters.notify.notifier import Notifier

log = logging.getLogger("tradingd.daemon")


def tune_gc() -> None:
    """Start-up state (code, config, recovered positions) is long-lived: move it out of the
    collector's view, and collect the young generation less often. Collections of a large heap
    are the daemon's longest pauses; money and positions hold no reference cycles, and the
    engine's records are never tracked at all (gc=False: tests/unit/test_untracked_structs.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


TASK_STOP_TIMEOUT_S = 5.0  # a cancelled task must end within this at shutdown


class ListenFailed(Unavailable):
    """The control port cannot listen on `[http] host:port`."""

    code = "listen_failed"

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        if exc.errno == errno.EADDRINUSE:
            message = (
                f"port {port} on {host} is already in use: stop what holds it "
                "or choose another with --port"
            )
        else:
            message = f"cannot listen on {host}:{port}: {exc.strerror}; check --host and --port"
        super().__init__(message, {"host": host, "port": port})


class Daemon:
    """Builds and holds every long-lived part and does all the wiring; the HTTP app, WebSocket
    hub and metrics read from it. `store` is set by `open_store()`, `keys`, `metrics` and `hub`
    by `build_control_port()` (None before)."""

    def __init__(self, settings: Settings, demo: bool) -> None:
        self.settings = settings
        self.demo = demo
        self.started_at = time.monotonic()
        self.cluster: ClusterRole | None = None  # hot standby: set below with a role
        self.ready = False
        self.engine = Engine(wall_clock_ms, **engine_options(settings))
        paper = PaperVenue(
            self.engine.price_usd, wall_clock_ms, settings.venues.paper.fill_delay_ms,
            rules_of=self.engine.instruments.get,  # exchange markets sized by their rules
        )  # fmt: skip
        self.runtime = Runtime(self.engine, {PAPER: paper})
        self.runtime.cascade_slice = settings.engine.cascade_slice or None
        self.event_log = EventLog()
        if settings.log_format == "pretty":  # sentences with names, symbols and decimal units
            from tradingd.adapters.app.log_pretty import TradeText

            self.event_log.describe = TradeText(self.engine).describe
        self.runtime.event_subscribers.append(self.event_log)
        self.data_dir = Path(settings.data_dir)
        # [[notify.channels]]: its subscriber only queues; senders start in start_notifications,
        # which also loads the channels created over the control port (notify_channels).
        self.notifier: Notifier | None = None
        self.notify_channels = ChannelFile(channels_path(self.data_dir))
        self._notify_channels_loaded = False
        self.wallets = Keystore(self.data_dir)
        self.live = LiveVenues(self)  # Jupiter, when [venues.jupiter] enabled
        # Exchange markets loaded per CCXT exchange id: instrument ids are checked against it.
        self.markets = MarketRegistry()
        self.exchanges = ExchangeAccounts(self)  # [venues.ccxt.<account>]: venues "ccxt:<account>"
        self.feeds: dict[str, Feed] = {}
        self.live_feeds: dict[str, LiveFeed] = {}  # the feeds above from market-data services
        self.recorder: Recorder | None = None  # [feeds.record] (adapters/app/recording.py)
        self.first_price = FirstPrice(self)  # a buy signal's token priced before it applies
        self.components: HealthRegistry = {}  # health of store, feeds, venues
        self._tasks: list[asyncio.Task[object]] = []
        self._stop = asyncio.Event()
        self.keys: KeyStore | None = None
        self.shared_keys: SharedKeys | None = None  # a cluster's keys, mirrored through Redis
        self.metrics: Metrics | None = None
        self.hub: WsHub | None = None
        self.store: Store | None = None
        # Awaited at shutdown after the order drain, last registered first (http, ws, store).
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        # Hot standby (adapters/cluster, docs/cluster.md): with a role, the control port opens
        # first and the store only once this process holds the lease.
        self.exit_code = 0
        self._port_open = False
        self.control_port: int | None = None  # the bound port (server.py), for the shards' URLs
        # Agent shards (adapters/cluster/shards.py, docs/cluster.md): this shard's own store
        # namespace `<ns>_s<i>`; the intake streams shared by the shards under `<ns>`.
        from tradingd.adapters.cluster.shards import shard_namespace
        from tradingd.adapters.store import namespace_from_env

        self.shard = settings.cluster.shard
        self.shards = settings.cluster.shards
        self.namespace = shard_namespace(namespace_from_env(), self.shard, self.shards)
        self.shard_intake: ShardIntake | None = None
        if self.shards > 1 and settings.store.redis_url:
            from tradingd.adapters.cluster.intake import ShardIntake

            self.shard_intake = ShardIntake(
                self,
                settings.store.redis_url,
                namespace_from_env(),
                self.shard,
                self.shards,
                dedupe_ms=settings.engine.dedupe_window_s * 1000,
                timeout_ms=settings.cluster.intake_timeout_ms,
                maxlen=settings.cluster.intake_maxlen,
            )
        self.forwarder: Forwarder | None = None  # another shard's agent: to its owner
        if self.shard_intake is not None and settings.cluster.forward:
            from tradingd.adapters.cluster.forward import Forwarder

            self.forwarder = Forwarder(self.shard, settings.cluster.forward_timeout_ms)
        wanted = settings.cluster.wanted()
        if wanted is not None and settings.store.redis_url:
            from tradingd.adapters.cluster.role import ClusterRole

            self.cluster = ClusterRole(
                settings.store.redis_url,
                self.namespace,  # a shard's standby shares its shard's lease
                wanted,
                settings.cluster.lease_ms,
            )
            self.runtime.lease_verified = self.cluster.verified
        # One feed leader per source across the shards (adapters/cluster/feed_leader.py).
        self.feed_leaders: FeedLeaders | None = None
        if self.shard_intake is not None and self.cluster is not None:
            from tradingd.adapters.cluster.feed_leader import FeedLeaders

            self.feed_leaders = FeedLeaders(
                self.shard_intake.redis_url,
                namespace_from_env(),
                self.shard,
                self.shards,
                instance=self.cluster.instance,
                lease_ms=settings.cluster.lease_ms,
                local_watched=self.engine.watched_tokens,
                components=self.components,
            )
        if settings.notify.channels:
            self.build_notifier()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Intake open. With a cluster role, only while this process holds the lease by its own
        clock too: a paused process refuses work the moment it runs again, before its renewal
        task has even noticed (hooks and the route guard both read this)."""
        return self._ready and (self.cluster is None or self.cluster.may_act())

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value

    def spawn(self, coro: Awaitable[object], name: str) -> asyncio.Task[object]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[object]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "background task died", exc_info=task.exception(), extra={"task": task.get_name()}
            )

    def owns(self, agent_id: str) -> bool:
        """This shard owns `agent_id` (always, with one shard)."""
        from tradingd.adapters.cluster.shards import owner

        return self.shards <= 1 or owner(agent_id, self.shards) == self.shard

    def create_configured_agents(self) -> None:
        strays = [a for a in self.engine.agents if not self.owns(a)]
        if strays:  # restored from this shard's store, yet another shard's by the hash
            log.error(
                "cluster: agents in this shard's store belong to other shards (the shard count "
                "changed without `tradingd cluster reshard`?)",
                extra={"agents": strays[:20], "count": len(strays)},
            )
        for spec in self.settings.agents:
            if spec.id in self.engine.agents or not self.owns(spec.id):
                continue  # exists, or another shard's
            self.runtime.apply(
                self.engine.create_agent,
                spec.name,
                spec.venue,
                agent_config(spec),
                spec.quote,
                spec.wallet_id,
                spec.id,
            )
            if spec.paper_deposit and spec.venue == "paper":
                self.runtime.apply(
                    self.engine.deposit, spec.id, spec.quote, int(spec.paper_deposit)
                )
            if spec.allocation and spec.venue.startswith("ccxt:"):
                self.runtime.apply(self.engine.deposit, spec.id, spec.quote, int(spec.allocation))

    def reload_agent_configs(self) -> None:
        """SIGHUP: re-read the config file and apply agent configs (new decisions only)."""
        from tradingd.adapters.app.settings import load_settings

        if not self.settings.config_path:
            log.info("SIGHUP without a config file: nothing to reload")
            return
        try:
            fresh = load_settings(self.settings.config_path)
        except TradingdError as exc:
            log.error("config reload rejected", extra={"reason": exc.message})
            return
        self.settings.agents = fresh.agents
        for spec in fresh.agents:
            if spec.id in self.engine.agents:
                self.runtime.apply(self.engine.update_config, spec.id, agent_config(spec))
        self.create_configured_agents()
        log.info("agent configs reloaded", extra={"agents": len(fresh.agents)})

    def start_live_feeds(self) -> None:
        """The market-data feeds the config enables (Pyth Hermes, DexScreener), pricing the
        tokens the engine watches (held, quotes, watchlist, recent signals)."""
        feeds = self.settings.feeds
        watched = self.watched_tokens
        if feeds.pyth.enabled:
            from tradingd.adapters.app.config_check import pyth_ids
            from tradingd.adapters.feeds.pyth import PythFeed

            api_key = os.environ.get("PYTH_API_KEY") or feeds.pyth.api_key
            self.start_feed(
                PythFeed(
                    feeds.pyth,
                    pyth_ids(self.settings),
                    watched,
                    api_key=api_key,
                    max_price_age_ms=self.engine.max_price_age_ms,
                )
            )
        if feeds.dexscreener.enabled:
            from tradingd.adapters.feeds.dexscreener import DexScreenerFeed

            self.start_feed(DexScreenerFeed(feeds.dexscreener, watched))
        self.exchanges.start_feeds()  # one ticker feed per exchange of [venues.ccxt.<account>]

    def watched_tokens(self) -> set[str]:
        """What the live feeds price: the engine's watched tokens; with shards, every shard's
        (a shard leading a feed prices the other shards' positions too)."""
        if self.feed_leaders is not None:
            return self.feed_leaders.watched()
        return self.engine.watched_tokens()

    def start_feed(self, feed: LiveFeed) -> None:
        """Run a live feed: its ticks go to the runtime, its health to /health."""
        self.feeds[feed.source] = feed
        self.live_feeds[feed.source] = feed
        self.run_feed(feed.source, feed.run, feed.health)

    def run_feed(
        self,
        source: str,
        run: Callable[[Any], Awaitable[None]],
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """`run(push)` as a task; with shards, only while this shard leads `source` (handed
        over while `health()` says its upstream fails here)."""
        push = self.feed_push()
        if self.feed_leaders is not None:
            self.spawn(self.feed_leaders.lead(source, run, push, health), f"feed-{source}")
        else:
            self.spawn(run(push), f"feed-{source}")

    def feed_push(self) -> Callable[[list[Tick]], object]:
        """Where a feed's ticks go: the runtime; with agent shards, the tick stream every shard
        applies (adapters/cluster/intake.py), in the order the feeds pushed them."""
        if self.shard_intake is not None:
            return self.shard_intake.feed_push
        return self.runtime.push_ticks

    def start_feeds(self) -> None:
        self.start_live_feeds()
        syn = self.settings.feeds.synthetic
        tokens: list[str] = []
        if syn.enabled:

            def known() -> dict[str, float]:
                return {token: tick.price_usd for token, tick in self.engine.prices.items()}

            feed = SyntheticFeed(syn, demo=self.demo, known=known)
            tokens = feed.tokens
            self.feeds["synthetic"] = feed
            self.run_feed("synthetic", feed.run)
        if self.demo:
            if DEMO_AGENT_ID not in self.engine.agents:
                self.runtime.apply(
                    self.engine.create_agent,
                    "demo agent (synthetic tokens only)",
                    "paper",
                    demo_agent_config(tokens),
                    "SOL",
                    None,
                    DEMO_AGENT_ID,
                )
                self.runtime.apply(self.engine.deposit, DEMO_AGENT_ID, "SOL", 100 * 10**9)
            demo = DemoSignals(tokens, seed=syn.seed)
            self.spawn(demo.run(self.runtime), "demo-signals")

    async def run(self, on_ready: Callable[[Daemon], Awaitable[None]] | None = None) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_agent_configs)
        from tradingd.adapters.store import StoreError

        if self.cluster is not None:
            try:  # the control port as a standby, then the lease
                if not await self._wait_for_lease(on_ready):
                    return await self.shutdown()  # stopped while standing by
            except ListenFailed as exc:
                log.error("start-up failed", extra={"reason": exc.message})
                await self.shutdown()
                print(f"tradingd: {exc.message}", file=sys.stderr)
                return 1
        try:  # lock the data dir, recover state, subscribe, resume in-flight orders
            await self._check_shard_count()
            secure_data_dir(self.data_dir, self._postgres_gid())
            self.live.start()  # before recovery: restored orders resume on their venues
            self.cleanups.append(self.live.close)
            self.exchanges.start()
            self.cleanups.append(self.exchanges.close)
            # Before recovery too: resumed exchange orders are sized by their markets' rules.
            await self.exchanges.load_markets()
            await self.open_store()
        except StoreError as exc:
            log.error("store unavailable", extra={"reason": exc.message})
            print(f"tradingd: {exc.message}", file=sys.stderr)
            return 1
        except (ShardCountMismatch, ShardCountUnknown, ReshardInterrupted) as exc:
            log.error("start-up refused", extra={"reason": exc.message})
            await self.shutdown()
            print(f"tradingd: {exc.message}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"tradingd: data dir {self.data_dir}: {exc.strerror}", file=sys.stderr)
            return 1
        try:
            await self._start(on_ready)
        except Exception as exc:  # the servers are up: stop them, then say why in one line
            reason = exc.message if isinstance(exc, ListenFailed) else f"start-up failed: {exc}"
            log.error("start-up failed", exc_info=not isinstance(exc, ListenFailed))
            await self.shutdown()
            print(f"tradingd: {reason}", file=sys.stderr)
            return 1
        await self._stop.wait()
        return await self.shutdown()

    # -- wiring -----------------------------------------------------------------------------

    def publish(self, events: list[ev.Event]) -> None:
        """Send events that come from outside a transition (the store's alerts) to every
        runtime subscriber, as a transition's events are."""
        for sub in list(self.runtime.event_subscribers):
            try:
                sub(events)
            except Exception:
                log.exception("alert subscriber failed")

    async def _check_shard_count(self) -> None:
        """On the external store, before recovery: refused (ShardCountMismatch,
        ReshardInterrupted, ShardCountUnknown) when the cluster's recorded shard count is not
        this process's, or cannot be read."""
        url = self.settings.store.redis_url
        if self.settings.store.kind != "external" or not url:
            return
        from tradingd.adapters.cluster.shards import check_recorded_count
        from tradingd.adapters.store import namespace_from_env

        await check_recorded_count(url, namespace_from_env(), self.shards)

    async def open_store(self, *, namespace: str | None = None, lock: bool = True) -> Store:
        """Open the configured store, restore the engine from it, subscribe it to the runtime
        first (so a transition is durable before anything else sees it), close it last at
        shutdown and resume the orders that were in flight. Raises StoreError."""
        from tradingd.adapters.store import open_store

        opened = await open_store(
            self.settings.store,
            self.engine,
            self.data_dir,
            self.components,
            self.publish,
            namespace=namespace or self.namespace,
            lock=lock,
            fence=self.cluster,  # every write-through carries the fencing token
        )
        store = self.store = opened.store
        self.runtime.cascade.write_backlog = lambda: store.pending_writes
        self.runtime.event_subscribers.insert(0, store.on_events)
        self.runtime.tick_subscribers.append(store.on_ticks)
        self.cleanups.append(store.close)
        # Exchange markets' rules at the restored instruments' decimals, before orders resume.
        self.exchanges.apply_rules()
        self.runtime.resume_orders(opened.orders_in_flight)
        return store

    def build_keys(self) -> KeyStore:
        """The API keys of the data dir (plus `TRADINGD_BOOTSTRAP_KEY`); on a data dir without
        keys, a first admin key is written to <data_dir>/admin.key (in a cluster, only when the
        whole cluster has none, after the first key sync: share_keys)."""
        if self.keys is None:
            keys = KeyStore(keys_path(self.data_dir), os.environ.get(BOOTSTRAP_ENV) or None)
            clustered = (
                self.settings.cluster.wanted() is not None or self.settings.cluster.shards > 1
            )
            if not (clustered and self.settings.store.redis_url):
                self._first_admin_key(keys)
            # else: once the cluster's keys are known (share_keys): only a cluster with no key
            if clustered:
                # docs/cluster.md "API keys": shared through Redis; the bootstrap key is not
                log.info(
                    "cluster: API keys are shared with the cluster's other processes through "
                    "Redis; TRADINGD_ADMIN_KEY is each process's own",
                    extra={"keys": len(keys.list()), "path": str(keys_path(self.data_dir))},
                )
            self.keys = keys
        return self.keys

    def _first_admin_key(self, keys: KeyStore) -> None:
        """On a data dir (with a cluster: a cluster) without a live key, a first admin key,
        written once to <data_dir>/admin.key."""
        key_file = admin_key_path(self.data_dir)
        created = keys.create_first_admin(key_file)
        if created is not None:  # the path only: the key itself is in the file, nowhere else
            log.warning(
                "no API keys: created an admin key, written once to `path`",
                extra={"path": str(key_file), "key_id": created.id},
            )

    def build_metrics(self) -> Metrics:
        """The daemon's metrics, subscribed to the runtime's events, ticks and orders; the
        event-loop lag sampler runs when a loop is running."""
        if self.metrics is None:
            from tradingd.adapters.metrics import Metrics

            metrics = self.metrics = Metrics(self)
            if self.cluster is not None:
                from tradingd.adapters.cluster.role import ClusterCollector

                metrics.registry.register(ClusterCollector(self.cluster))
            if self.shard_intake is not None:
                from tradingd.adapters.cluster.intake import IntakeCollector

                metrics.registry.register(IntakeCollector(self.shard_intake))
            if self.forwarder is not None:
                from tradingd.adapters.cluster.forward import ForwardCollector

                metrics.registry.register(ForwardCollector(self.forwarder))
            if self.feed_leaders is not None:
                from tradingd.adapters.cluster.feed_leader import FeedLeaderCollector

                metrics.registry.register(FeedLeaderCollector(self.feed_leaders))
            self.runtime.event_subscribers.append(metrics.on_events)
            self.runtime.tick_subscribers.append(metrics.on_ticks)
            self.runtime.order_observers.append(metrics.on_order)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # built outside a loop (tests, tools): no lag sampling
            else:
                self.spawn(metrics.sample_loop_lag(), "metrics-loop-lag")
        return self.metrics

    def build_hub(self) -> WsHub:
        """The WebSocket hub over the engine and the keys (built first when missing),
        subscribed to the runtime's events and ticks, closed at shutdown."""
        if self.hub is None:
            from tradingd.adapters.http.ws import WsHub

            hub = self.hub = WsHub(self.engine, self.settings, self.build_keys())
            self.runtime.event_subscribers.append(hub.dispatch.on_events)
            self.runtime.tick_subscribers.append(hub.dispatch.on_ticks)
            self.runtime.tick_intake.append(hub.dispatch.on_tick_intake)
            self.cleanups.append(hub.close_all)
        return self.hub

    def build_control_port(self) -> None:
        """Everything the control port serves from: keys, metrics, the WebSocket hub."""
        self.build_keys()
        self.build_metrics()
        self.build_hub()

    def build_notifier(self) -> Notifier:
        """The notifier (built when the config file or the control port first has a channel),
        subscribed to the runtime's events, its series in the metrics."""
        if self.notifier is None:
            from tradingd.adapters.notify.notifier import Notifier

            symbols = {m: t.symbol for m, t in self.settings.tokens.items() if t.symbol}
            notifier = self.notifier = Notifier(self.settings.notify, self.engine, symbols=symbols)
            self.runtime.event_subscribers.append(notifier.on_events)
            if self.metrics is not None:  # built before: register what build_metrics would
                from tradingd.adapters.notify.metrics import NotifyCollector

                self.metrics.registry.register(NotifyCollector(notifier))
        return self.notifier

    def start_notifications(self) -> None:
        """Add the channels created over the control port (<data_dir>/notify_channels.json,
        once) and start the notification senders (adapters/notify); at shutdown, after the
        order drain, their queues get `[notify] drain_s` to empty. Called again when the
        control port creates the first channel. Raises ValidationError on a corrupt file."""
        if not self._notify_channels_loaded:
            self.notify_channels.load()
            self._notify_channels_loaded = True
            for channel, created_at in self.notify_channels.startable(
                self.settings.notify, os.environ
            ):
                hide_in_logs(channel_secrets(channel))
                self.build_notifier().add_channel(channel, "api", created_at)
        if self.notifier is not None and not self.notifier.started:
            self.notifier.start()
            self.cleanups.append(self.notifier.close)

    def _postgres_gid(self) -> int | None:
        if self.settings.store.kind != "embedded":
            return None
        from tradingd.adapters.store.embedded import postgres_traverse_gid

        return postgres_traverse_gid()

    async def _start(self, on_ready: Callable[[Daemon], Awaitable[None]] | None) -> None:
        """Everything after the store opened, up to READY=1. Raises ListenFailed when the
        control port cannot listen."""
        self.create_configured_agents()
        self.start_notifications()
        self.spawn(self.runtime.clock_loop(self.settings.engine.clock_interval_ms), "engine-clock")
        self.spawn(self.event_log.run(), "event-log")
        from tradingd.adapters.app.recording import start_recording

        self.recorder = start_recording(self)
        leaders = self.feed_leaders
        if leaders is not None:  # the leases and the shared watched tokens before any feed
            await leaders.open()
            self.cleanups.append(leaders.close)
            self.spawn(leaders.share_watched(), "cluster-feed-watched")
        self.start_feeds()
        # Swaps recorded before a restart are resolved, and the wallets compared with the
        # book, before the control port takes work.
        await self.live.resolve_recovered(self.settings.shutdown.grace_s)
        await self.exchanges.resolve_recovered(self.settings.shutdown.grace_s)
        await self.live.reconcile()
        await self.exchanges.reconcile()
        self.exchanges.start_tasks()  # markets reload, reconciliation after a reconnect
        intake = self.shard_intake
        if intake is not None:  # this shard's consumer groups exist before the port takes work
            await intake.open()
            self.cleanups.append(intake.close)  # after the store's: runs before it
            if self.forwarder is not None:
                self.forwarder.token = intake.forward_token
                self.cleanups.append(self.forwarder.close)
        if on_ready is not None and not self._port_open:
            try:
                await on_ready(self)
            except OSError as exc:
                if exc.filename is not None:  # a file, not the socket
                    raise
                raise ListenFailed(self.settings.http.host, self.settings.http.port, exc) from exc
        if intake is not None:
            host = self.settings.http.host
            port = self.control_port
            await intake.start(f"http://{host}:{port}" if port else None)
        tune_gc()
        if self.cluster is not None and self.cluster.role == "stepped_down":
            return  # lost the lease while recovering: run() shuts down
        self.ready = True
        if self.cluster is not None:
            self.cluster.activated()
        systemd.notify("READY=1")
        self.spawn(systemd.watchdog_loop(), "systemd-watchdog")
        log.info("tradingd ready", extra={"version": VERSION, "demo": self.demo})

    def request_stop(self) -> None:
        self._stop.set()

    # -- hot standby ------------------------------------------------------------------------

    async def _wait_for_lease(self, on_ready: Callable[[Daemon], Awaitable[None]] | None) -> bool:
        """As a standby: open the control port (health, metrics; writes answer 503 standby),
        wait for the lease, and keep it renewed from then on. False if stopped first. Raises
        ListenFailed."""
        cluster = self.cluster
        assert cluster is not None
        secure_data_dir(self.data_dir, self._postgres_gid())
        if on_ready is not None:
            try:
                await on_ready(self)
            except OSError as exc:
                if exc.filename is not None:
                    raise
                raise ListenFailed(self.settings.http.host, self.settings.http.port, exc) from exc
            self._port_open = True
        self.share_keys()
        systemd.notify("STATUS=standby: waiting for the lease")
        if not await cluster.connect(self._stop) or not await cluster.wait_for_lease(self._stop):
            return False
        cluster.start_renewing(self._step_down)
        # Registered before the store's cleanup, so it runs after it: the lease is released
        # only once everything is flushed (a clean stop hands over without waiting lease_ms).
        # A start refused after taking it (another shard count, an interrupted reshard) lets
        # go too; only a process that lost it (stepped down) has nothing to give back.
        self.cleanups.append(lambda: cluster.close(release=cluster.role != "stepped_down"))
        return True

    def share_keys(self) -> None:
        """A cluster's processes share their API keys through Redis (adapters/cluster/
        shared_keys.py), from before a standby takes over: a client's key works on every
        shard and after a takeover."""
        if self.shared_keys is not None or not self.settings.store.redis_url:
            return
        from tradingd.adapters.cluster.shared_keys import SharedKeys
        from tradingd.adapters.store import namespace_from_env

        keys = self.build_keys()
        shared = self.shared_keys = SharedKeys(
            self.settings.store.redis_url,
            namespace_from_env(),
            keys,
            self.components,
            on_first_sync=lambda: self._first_admin_key(keys),
        )
        self.spawn(shared.run(), "cluster-shared-keys")
        self.cleanups.append(shared.close)

    def _step_down(self, reason: str) -> None:
        """The lease is lost (renewal refused, a fenced write, or lapsed by our own clock): stop
        acting at once. Intake closes and feeds and clock stop in this same call; the store
        writes nothing more (the write-through and the writer check the lease themselves);
        then the process exits with STEPPED_DOWN_EXIT, and systemd starts it again as a
        standby (docs/cluster.md)."""
        from tradingd.adapters.cluster.role import STEPPED_DOWN_EXIT

        self.ready = False
        self.runtime.accepting = False
        self.exit_code = STEPPED_DOWN_EXIT
        for task in self._tasks:
            if task.get_name().startswith("feed-") or task.get_name() in (
                "demo-signals",
                "engine-clock",
            ):
                task.cancel()
        systemd.notify("STATUS=stepped down: the lease was lost")
        lease = self.cluster.lease if self.cluster is not None else None
        self.publish(
            [
                ev.Alert(
                    ts=self.engine.clock(),
                    code="cluster_stepped_down",
                    message=f"this process lost its lease and stops acting: {reason}",
                    details={"fencing_token": lease.token if lease is not None else 0},
                )
            ]
        )
        self._stop.set()

    async def shutdown(self) -> int:
        systemd.notify("STOPPING=1")
        log.info("shutting down: intake closed, draining in-flight orders")
        self.ready = False
        self.runtime.accepting = False
        for task in self._tasks:
            if task.get_name().startswith("feed-") or task.get_name() in (
                "demo-signals",
                "engine-clock",
            ):
                task.cancel()
        stepped_down = self.cluster is not None and self.cluster.role == "stepped_down"
        # A process that lost its lease waits for nothing: its orders are the new holder's.
        grace = 0.0 if stepped_down else self.settings.shutdown.grace_s
        drained = await self.runtime.wait_orders(grace)
        if not drained:
            log.error(
                "orders still in flight at the end of the grace period",
                extra={"orders": sorted(self.runtime.in_flight)},
            )
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task that swallowed its cancel (a library turning it into an error a
            # broad except eats) must not hold the shutdown.
            _done, stuck = await asyncio.wait(self._tasks, timeout=TASK_STOP_TIMEOUT_S)
            if stuck:
                log.error(
                    "tasks did not stop when cancelled",
                    extra={"tasks": sorted(t.get_name() for t in stuck)},
                )
        for cleanup in reversed(self.cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup failed")
        log.info("tradingd stopped", extra={"exit_code": self.exit_code})
        return self.exit_code
