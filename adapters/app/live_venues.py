"""The live venues of a daemon: the Jupiter venue with its HTTP sessions (one per host, kept
warm), circuit breakers, RPC lander and wallet gate; the journal that makes a signed swap durable
before it is sent; start-up resolution of recorded swaps and the wallet-vs-book reconciliation;
and their health. Built only when `[venues.jupiter] enabled`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from tradingd.adapters.app.resolutions import await_resolutions
from tradingd.adapters.solana.rpc import RpcFailure, SolanaRpc
from tradingd.adapters.venues import JUPITER, PAPER
from tradingd.adapters.venues.breaker import CircuitBreaker
from tradingd.adapters.venues.jupiter.client import JupiterClient
from tradingd.adapters.venues.jupiter.landing import Lander, LandingTimings
from tradingd.adapters.venues.jupiter.venue import JupiterVenue
from tradingd.adapters.venues.paper_quotes import JupiterQuotedPaper
from tradingd.adapters.venues.wallet_gate import WalletGate
from tradingd.engine import events as ev
from tradingd.engine.assets import SOL_MINT, quote_mint
from tradingd.engine.errors import TradingdError
from tradingd.engine.lifecycle import HOLDING
from tradingd.engine.model import SwapSubmission

if TYPE_CHECKING:
    from tradingd.adapters.app.daemon import Daemon

log = logging.getLogger("tradingd.venues")
JOURNAL_TIMEOUT_S = 5.0  # a swap not durable within this is not sent


class LiveVenues:
    """Owned by the Daemon: `start()` builds and registers the Jupiter venue (inside the event
    loop: the sessions need it), `resolve_recovered()` and `reconcile()` run before the control
    port opens, `close()` at shutdown."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.gate = WalletGate(daemon.wallets.unlocked_keypair, daemon.wallets.public_key)
        self.venue: JupiterVenue | None = None
        self.breakers: dict[str, CircuitBreaker] = {}
        self.reconciliation: dict[str, Any] = {"status": "unknown", "reason": "not run yet"}
        self._sessions: list[aiohttp.ClientSession] = []
        self._jupiter: JupiterClient | None = None

    @property
    def enabled(self) -> bool:
        return self.daemon.settings.venues.jupiter.enabled

    def start(self) -> None:
        """Build the Jupiter venue (when enabled) and paper at Jupiter quotes (when
        `[venues.paper] quotes = "jupiter"`) into the runtime's venues; both share one Jupiter
        client (one warm session per host)."""
        d = self.daemon
        cfg, sol = d.settings.venues.jupiter, d.settings.solana
        paper_quoted = d.settings.venues.paper.quotes == "jupiter"
        if self._jupiter is not None or not (self.enabled or paper_quoted):
            return
        jupiter = self._jupiter = JupiterClient(
            cfg.url, self._session(), api_key=cfg.api_key, timeout_s=cfg.timeout_ms / 1000,
            breaker=self._breaker("jupiter", cfg.breaker_failures, cfg.breaker_reset_s),
        )  # fmt: skip
        if paper_quoted:
            d.runtime.venues[PAPER] = JupiterQuotedPaper(
                jupiter, d.engine.price_usd, d.engine.clock,
                restrict_intermediate_tokens=cfg.restrict_intermediate_tokens,
                rules_of=d.engine.instruments.get,
            )  # fmt: skip
            log.info("paper venue fills at Jupiter quotes", extra={"jupiter": jupiter.host()})
        if not self.enabled:
            return
        rpc_breaker = self._breaker("solana_rpc", cfg.breaker_failures, cfg.breaker_reset_s)
        rpc = SolanaRpc(
            sol.rpc_url, self._session(), timeout_s=sol.timeout_ms / 1000,
            commitment=sol.commitment, breaker=rpc_breaker,
        )  # fmt: skip
        lander = Lander(
            rpc,
            LandingTimings(cfg.confirm_poll_ms, cfg.rebroadcast_ms, cfg.receipt_polls),
            commitment=sol.commitment,
            skip_preflight=cfg.skip_preflight,
            on_receipt_missing=self._receipt_missing,
        )
        self.venue = JupiterVenue(
            jupiter=jupiter,
            rpc=rpc,
            lander=lander,
            settings=cfg,
            wallets=self.gate,
            journal=self,
            agent_of=d.engine.agents.get,
            price_of=d.engine.price_usd,
            clock=d.engine.clock,
            alert=self.alert,
            observe_step=self._observe_step,
        )
        d.runtime.venues[JUPITER] = self.venue
        log.info("jupiter venue ready", extra={"jupiter": jupiter.host(), "rpc": rpc.host()})

    def _breaker(self, name: str, failures: int, reset_s: float) -> CircuitBreaker:
        breaker = CircuitBreaker(name, failure_threshold=failures, reset_after_s=reset_s)
        self.breakers[name] = breaker
        return breaker

    def _session(self) -> aiohttp.ClientSession:
        # One session (one warm connection pool) per host; keep-alive reuses the TLS connection.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=60),
            auto_decompress=True,
        )
        self._sessions.append(session)
        return session

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()
        self._sessions.clear()

    # -- the journal (JupiterVenue's SwapJournal) ---------------------------------------------

    async def swap_submitted(self, order_id: str, swap: SwapSubmission) -> None:
        """Record the signed swap on its order (a transition: the event goes to every subscriber,
        the store first) and return once the store holds it. Raises when it does not in time."""
        d = self.daemon
        d.runtime.apply(d.engine.on_swap_submitted, order_id, swap)
        if d.store is not None:
            await d.store.flushed(JOURNAL_TIMEOUT_S)

    # -- wallets -----------------------------------------------------------------------------

    def wallet_changed(self, wallet_id: str, unlocked: bool) -> None:
        """A wallet was unlocked or locked through the control port: buys follow it at once
        (Engine.set_wallet_unlocked) and exits waiting for it wake."""
        d = self.daemon
        d.runtime.apply(d.engine.set_wallet_unlocked, wallet_id, unlocked)
        self.gate.changed(wallet_id)

    async def wallet_lamports(self, wallet_id: str) -> int:
        """The wallet's SOL on chain, lamports. Raises RpcFailure, NotFound."""
        assert self.venue is not None
        return await self.venue.rpc.get_balance(self.gate.public_key(wallet_id))

    def booked_lamports(self, wallet_id: str) -> int:
        """SOL the book allocates to the wallet's live agents (totals, reserved included)."""
        engine = self.daemon.engine
        total = 0
        for agent in engine.agents.values():
            if agent.wallet_id == wallet_id and agent.venue == JUPITER:
                for bal in engine.ledger.balances(agent.id):
                    if quote_mint(bal.asset) == SOL_MINT:
                        total += bal.total
        return total

    # -- alerts, metrics, health ---------------------------------------------------------------

    def alert(self, code: str, message: str, details: dict[str, object]) -> None:
        log.warning(message, extra={"alert": code, **{k: str(v) for k, v in details.items()}})
        self.daemon.publish(
            [ev.Alert(ts=self.daemon.engine.clock(), code=code, message=message, details=details)]
        )

    def _receipt_missing(self, signature: str) -> None:
        self.alert(
            "swap_receipt_missing",
            f"swap {signature} is confirmed but the RPC has no receipt for it yet: its order "
            "stays in flight (amounts unknown) until one comes",
            {"signature": signature},
        )

    def _observe_step(self, step: str, seconds: float) -> None:
        metrics = self.daemon.metrics
        if metrics is not None:
            metrics.swap_steps.labels(JUPITER, step).observe(seconds)

    @property
    def reports_health(self) -> bool:
        return self._jupiter is not None

    def health(self) -> dict[str, Any]:
        """components.venues.jupiter of /health: breakers, swaps in flight, reconciliation."""
        breakers = {name: b.health() for name, b in self.breakers.items()}
        pending = sum(
            1 for o in self.daemon.engine.orders.values() if o.venue == JUPITER and o.swap
        )
        status = "ok"
        if any(b.state != "closed" for b in self.breakers.values()):
            status = "degraded"
        if self.reconciliation.get("status") == "mismatch":
            status = "degraded"
        return {
            "status": status,
            "breakers": breakers,
            "swaps_in_flight": pending,
            "reconciliation": self.reconciliation,
        }

    # -- start-up ----------------------------------------------------------------------------

    async def resolve_recovered(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s`) until every restored order whose swap was recorded before
        the restart has that swap resolved (landed: filled or failed; expired), before the
        control port opens. What an order does next (a new attempt, an exit waiting for its
        wallet's unlock) is not waited for."""
        d, venue = self.daemon, self.venue
        if venue is None:
            return
        waits = [
            (venue.resolution(oid), task)
            for oid, task in d.runtime.in_flight.items()
            if (o := d.engine.orders.get(oid)) is not None and o.venue == JUPITER and o.swap
        ]  # fmt: skip
        await await_resolutions(waits, timeout_s, "swaps")

    async def reconcile(self) -> None:
        """Compare each live wallet's SOL and tokens on chain with what the book allocates to its
        agents (quote totals; open positions' amounts). A wallet holding less than its book is a
        mismatch: reported in /health and as an alert, never "fixed". Funds beyond the book are
        reported as unallocated."""
        if self.venue is None:
            return
        engine = self.daemon.engine
        wallets = {
            a.wallet_id for a in engine.agents.values() if a.venue == JUPITER and a.wallet_id
        }
        report: dict[str, Any] = {}
        mismatched = False
        started = time.monotonic()
        try:
            for wallet_id in sorted(wallets):
                try:
                    owner = self.gate.public_key(wallet_id)
                except TradingdError as exc:  # missing or damaged file: report, keep running
                    mismatched = True
                    report[wallet_id] = {"status": "wallet_missing", "reason": exc.message}
                    self.alert(
                        "wallet_missing",
                        f"wallet {wallet_id} of a live agent is not in the keystore: its "
                        "agents cannot sign (exits wait, buys are skipped)",
                        {"wallet_id": wallet_id},
                    )
                    continue
                lamports = await self.venue.rpc.get_balance(owner)
                tokens = await self.venue.rpc.get_token_balances(owner)
                book_tokens: dict[str, int] = {}
                for p in engine.positions.values():
                    agent = engine.agents.get(p.agent_id)
                    if agent is not None and agent.wallet_id == wallet_id and p.status in HOLDING:
                        book_tokens[p.token] = book_tokens.get(p.token, 0) + p.amount
                entry: dict[str, Any] = {
                    "public_key": owner,
                    "sol": _compare(lamports, self.booked_lamports(wallet_id)),
                    "tokens": {m: _compare(tokens.get(m, 0), n) for m, n in book_tokens.items()},
                }
                short = [k for k, v in entry["tokens"].items() if v["short"]]
                if entry["sol"]["short"] or short:
                    mismatched = True
                    self.alert(
                        "wallet_book_mismatch",
                        f"wallet {wallet_id} holds less than its agents' book",
                        {"wallet_id": wallet_id, "sol": entry["sol"], "tokens_short": short},
                    )
                report[wallet_id] = entry
        except RpcFailure as exc:
            self.reconciliation = {"status": "unknown", "reason": exc.reason}
            log.warning("wallet reconciliation failed", extra={"reason": exc.reason})
            return
        self.reconciliation = {
            "status": "mismatch" if mismatched else "ok",
            "wallets": report,
            "checked_in_ms": round((time.monotonic() - started) * 1000),
        }


def _compare(chain: int, book: int) -> dict[str, Any]:
    """Atomic amounts on chain and in the book, as decimal strings (API convention)."""
    return {"chain": str(chain), "book": str(book), "short": chain < book}
