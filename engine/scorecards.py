"""Signal-provider scorecards, kept incrementally as signals, fills and closes happen: one card
per source and one per source × agent (scorecard_stats.Card), and each agent's per-source
breaker (source_breaker.py), which reads its card.

Sources are free strings a client sends, so the cards are bounded: a source gets its card when
a signal naming it is received, while fewer than `max_sources` exist and the posting API key
began fewer than `max_key_sources`; an agent's card on a source begins with its first order from
it, up to `max_agent_sources`. Past a bound, "other" counts them (a shared card: no breaker);
signals without a source count under "unattributed".
Every card changed since the store last asked is listed by `take_dirty` (persistence writes it
through like any other state)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import TypeVar

import msgspec
from msgspec import Struct

from .config import SourceBreaker
from .model import Attribution
from .money import decimal_ratio
from .scorecard_stats import HOUR_MS, Card, Stats, latency_bucket
from .source_breaker import BreakerState, trip_rule

OTHER = "other"
UNATTRIBUTED = "unattributed"
RESERVED_SOURCES = frozenset((OTHER, UNATTRIBUTED))  # no signal may name itself so
SOURCE_LEVEL = ""  # the agent id of a source's own card
RECENT_MAX = 100_000  # (agent, source) pairs whose hour buckets are kept at hand


def is_reserved(source: str) -> bool:
    """Whether `source` reads as a reserved card name: compared after NFKC, without what is
    drawn as nothing (format characters such as zero-width and bidi marks, combining marks and
    variation selectors, the Hangul fillers) or surrounding space, case-folded (`Other`,
    `ｏｔｈｅｒ`, `other` with U+FE0F all are). Letters of other scripts that look alike (Cyrillic
    `о`) are not folded: that is confusable detection, not normalisation."""
    text = unicodedata.normalize("NFKC", source)
    text = "".join(c for c in text if not _invisible(c)).strip().casefold()
    return text in RESERVED_SOURCES


_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


def _invisible(c: str) -> bool:
    return unicodedata.category(c) in ("Cf", "Mn", "Me") or c in _FILLERS


class SavedCard(Struct, kw_only=True):
    """A card as persisted: `agent_id` "" for the source's own card."""

    agent_id: str
    source: str
    card: Card
    breaker: BreakerState | None = None
    deleted: bool = False  # the card was forgotten (Engine.forget_source)


class Scorecards:
    """Per-source and per source × agent cards (see the module docstring)."""

    def __init__(
        self, max_sources: int = 1000, max_agent_sources: int = 200, max_key_sources: int = 100
    ) -> None:
        self.max_sources = max_sources
        self.max_agent_sources = max_agent_sources
        self.max_key_sources = max_key_sources
        self.key_sources: dict[str, int] = {}  # API key id -> source cards its signals began
        self.by_source: dict[str, Card] = {}
        self.by_agent: dict[str, dict[str, Card]] = {}  # agent id -> source -> card
        self.breakers: dict[str, dict[str, BreakerState]] = {}  # agent id -> source -> state
        self.dirty: dict[tuple[str, str], None] = {}
        # (agent id, card name) -> (hour, source card, agent card, their hour's Stats): _hours
        self._recent: dict[tuple[str, str], tuple[int, Card, Card, Stats, Stats, str]] = {}

    # -- naming -------------------------------------------------------------------------------

    def name(self, source: str) -> str:
        """The card name of `source`: itself if it has a card, else "other" ("unattributed"
        for no source). Only a signal's receipt gives a source a card (`admit`)."""
        if not source:
            return UNATTRIBUTED
        return source if source in self.by_source else OTHER

    def admit(self, source: str, key_id: str | None) -> str:
        """The card name of a received signal's `source`, giving it a card of its own while
        there is room: fewer than `max_sources` cards, and fewer than `max_key_sources` begun
        by the key that posted it (so one key cannot take every slot)."""
        if not source:
            return UNATTRIBUTED
        if source in self.by_source:
            return source
        shared = (OTHER in self.by_source) + (UNATTRIBUTED in self.by_source)
        if len(self.by_source) - shared >= self.max_sources:
            return OTHER
        if key_id is not None:
            if self.key_sources.get(key_id, 0) >= self.max_key_sources:
                return OTHER
            self.key_sources[key_id] = self.key_sources.get(key_id, 0) + 1
        self.by_source[source] = Card(created_by=key_id)
        return source

    def agent_name(self, agent_id: str, name: str) -> str:
        """The agent's card name for source card `name`: itself while the agent has fewer
        than `max_agent_sources` cards, else "other" (its breaker too)."""
        cards = self.by_agent.get(agent_id)
        if cards is None or name in cards or len(cards) < self.max_agent_sources:
            return name
        return OTHER

    def _source_card(self, name: str) -> Card:
        card = self.by_source.get(name)
        if card is None:
            card = self.by_source[name] = Card()
        self.dirty[(SOURCE_LEVEL, name)] = None
        return card

    def _agent_card(self, agent_id: str, name: str) -> Card:
        cards = self.by_agent.get(agent_id)
        if cards is None:
            cards = self.by_agent[agent_id] = {}
        card = cards.get(name)
        if card is None:
            card = cards[name] = Card()
        self.dirty[(agent_id, name)] = None
        return card

    def _hours(self, agent_id: str, name: str, now: int) -> tuple[Stats, Stats]:
        """This hour's Stats of the source's card and of the agent's card on it. The pair last
        used for (agent, source) is kept while its hour lasts: a fill's updates skip the card
        lookups (the signal path's cost)."""
        hour = now // HOUR_MS
        key = (agent_id, name)
        hit = self._recent.get(key)
        if (
            hit is not None
            and hit[0] == hour
            and hit[1].folded < hour  # neither bucket folded since (a clock that stepped back)
            and hit[2].folded < hour
        ):
            _, theirs_card, mine_card, theirs, mine, mine_name = hit
            theirs_card.updated_at = mine_card.updated_at = now
            self.dirty[(SOURCE_LEVEL, name)] = None
            self.dirty[(agent_id, mine_name)] = None
            return theirs, mine
        mine_name = self.agent_name(agent_id, name)
        theirs_card, mine_card = self._source_card(name), self._agent_card(agent_id, mine_name)
        theirs, mine = theirs_card.bucket(now), mine_card.bucket(now)
        if len(self._recent) >= RECENT_MAX:
            self._recent.clear()
        if theirs_card.folded < hour and mine_card.folded < hour:  # both buckets are `hour`'s
            self._recent[key] = (hour, theirs_card, mine_card, theirs, mine, mine_name)
        return theirs, mine

    # -- what happened ------------------------------------------------------------------------

    def signal_received(self, source: str, key_id: str | None, now: int) -> None:
        """A signal of `source` was received, posted with API key `key_id`."""
        self._source_card(self.admit(source, key_id)).bucket(now).received += 1

    def filtered(self, source: str, reasons: dict[str, str], now: int) -> None:
        """Agents whose filters refused the signal (agent id -> reason): counted per source."""
        skipped = self._source_card(self.name(source)).bucket(now).skipped
        for reason in reasons.values():
            skipped[reason] = skipped.get(reason, 0) + 1

    def execution(self, agent_id: str, source: str, status: str, reason: str, now: int) -> None:
        """An agent's execution of a signal its filters accepted ended `status` (skipped,
        filled or failed): per agent this is what `received` counts. A skip of a source the
        agent has no card on is counted on the source's card only: an agent's cards begin with
        an order (a flood of signals it skips cannot take its card slots)."""
        name = self.name(source)
        if status == "skipped" and name not in self.by_agent.get(agent_id, {}):
            skipped = self._source_card(name).bucket(now).skipped
            skipped[reason] = skipped.get(reason, 0) + 1
            return
        theirs, mine = self._hours(agent_id, name, now)
        mine.received += 1
        if status == "filled":
            theirs.executed += 1
            mine.executed += 1
        elif status == "failed":
            theirs.failed += 1
            mine.failed += 1
        else:
            theirs.skipped[reason] = theirs.skipped.get(reason, 0) + 1
            mine.skipped[reason] = mine.skipped.get(reason, 0) + 1

    def entry_filled(
        self, agent_id: str, by: Attribution | None, price_usd: float, now: int
    ) -> None:
        """A position's entry buy filled at `price_usd`: slippage against the price when its
        signal arrived (bps, a statistic: float), and the signal -> fill latency."""
        slip = latency = None
        if by is not None:
            if by.price_usd:
                slip = (price_usd / by.price_usd - 1) * 10_000
            if by.received_at:
                latency = latency_bucket(now - by.received_at)
        theirs, mine = self._hours(agent_id, self.name(by.source if by else ""), now)
        theirs.add_fill(slip, latency)
        mine.add_fill(slip, latency)

    def closed(
        self,
        agent_id: str,
        by: Attribution | None,
        quote: str,
        quote_decimals: int,
        quote_usd: float | None,
        pnl: int,
        held_ms: int,
        now: int,
    ) -> str:
        """A position opened by `by` closed with `pnl` (quote atomic). Returns the agent's card
        name (its breaker's)."""
        name = self.name(by.source if by is not None else "")
        pnl_usd = None
        if quote_usd:
            # micro-USD, rounded down once from the exact product of the values as written
            n, d = _ratio(quote_usd)
            pnl_usd = pnl * n * 10**6 // (d * 10**quote_decimals)
        theirs, mine = self._hours(agent_id, name, now)
        theirs.add_close(pnl, quote, pnl_usd, held_ms)
        mine.add_close(pnl, quote, pnl_usd, held_ms)
        return self.agent_name(agent_id, name)

    # -- the per-source breaker -----------------------------------------------------------------

    def breaker(self, agent_id: str, name: str) -> BreakerState | None:
        """The agent's breaker on card `name`, None if it never judged a trade."""
        return self.breakers.get(agent_id, {}).get(name)

    def record_result(
        self, agent_id: str, name: str, cfg: SourceBreaker, pnl: int, deposited: int, now: int
    ) -> tuple[str, dict[str, object]] | None:
        """Add a closed trade's PnL to the agent's breaker on source `name`; returns (rule,
        details) when this trade trips it, else None."""
        state = self.breakers.setdefault(agent_id, {}).get(name)
        if state is None:
            state = self.breakers[agent_id][name] = BreakerState()
        self.dirty[(agent_id, name)] = None
        if state.tripped_at is not None:
            return None
        state.recent.append(pnl)
        if len(state.recent) > cfg.lookback_trades:
            del state.recent[: len(state.recent) - cfg.lookback_trades]
        tripped = trip_rule(cfg, state.recent, deposited)
        if tripped is not None:
            state.tripped_at = now
            state.rule, state.details = tripped
        return tripped

    def reset(self, agent_id: str, name: str, now: int) -> bool:
        """Reset a tripped breaker (its trade memory starts afresh). False if not tripped."""
        state = self.breaker(agent_id, name)
        if state is None or state.tripped_at is None:
            return False
        state.tripped_at, state.rule, state.details = None, None, {}
        state.recent = []
        state.reset_at = now
        self.dirty[(agent_id, name)] = None
        return True

    def forget(self, name: str) -> int:
        """Drop source card `name` with every agent's card and breaker on it (its slot is free
        again). Returns how many agents had one; raises KeyError for an unknown card."""
        card = self.by_source.pop(name)
        if card.created_by is not None and self.key_sources.get(card.created_by):
            self.key_sources[card.created_by] -= 1
        self.dirty[(SOURCE_LEVEL, name)] = None
        agents = 0
        for agent_id, cards in self.by_agent.items():
            if cards.pop(name, None) is not None:
                agents += 1
                self.dirty[(agent_id, name)] = None
            self.breakers.get(agent_id, {}).pop(name, None)
        self._recent.clear()
        return agents

    # -- persistence --------------------------------------------------------------------------

    def drop_agent(self, agent_id: str) -> None:
        """Forget a deleted agent's cards and breakers (the per-source cards keep its past)."""
        self.by_agent.pop(agent_id, None)
        self.breakers.pop(agent_id, None)
        self._recent.clear()
        for key in [k for k in self.dirty if k[0] == agent_id]:
            del self.dirty[key]

    def take_dirty(self) -> list[SavedCard]:
        """Every card changed since the last call, as SavedCards of copies (a forgotten one
        as deleted)."""
        out = self._saved(self.dirty)
        self.dirty.clear()
        return out

    def saved(self) -> list[SavedCard]:
        """Every card, as SavedCards of copies (a snapshot). An agent's breaker is kept with
        its card on the source (a breaker judges only trades its card counted)."""
        keys = [(SOURCE_LEVEL, name) for name in self.by_source]
        keys += [(a, n) for a, cards in self.by_agent.items() for n in cards]
        return self._saved(keys)

    def _saved(self, keys: Iterable[tuple[str, str]]) -> list[SavedCard]:
        out = []
        for agent_id, name in keys:
            if agent_id == SOURCE_LEVEL:
                card, breaker = self.by_source.get(name), None
            else:
                card, breaker = (
                    self.by_agent.get(agent_id, {}).get(name),
                    self.breaker(agent_id, name),
                )
            if card is None:
                if agent_id == SOURCE_LEVEL or agent_id in self.by_agent:  # forgotten
                    out.append(SavedCard(agent_id=agent_id, source=name, card=Card(), deleted=True))
                continue
            out.append(
                SavedCard(
                    agent_id=agent_id,
                    source=name,
                    card=_copy(card),
                    breaker=_copy(breaker) if breaker is not None else None,
                )
            )
        return out

    def restore(self, saved: SavedCard) -> None:
        """Load a persisted card (recovery); a later one for the same key replaces it."""
        self._recent.clear()
        if saved.deleted:
            return
        if saved.agent_id == SOURCE_LEVEL:
            self.by_source[saved.source] = saved.card
            by = saved.card.created_by
            if by is not None:
                self.key_sources[by] = self.key_sources.get(by, 0) + 1
            return
        self.by_agent.setdefault(saved.agent_id, {})[saved.source] = saved.card
        if saved.breaker is not None:
            self.breakers.setdefault(saved.agent_id, {})[saved.source] = saved.breaker


_enc = msgspec.msgpack.Encoder()
# A quote's USD price as the decimal it is written as: parsed once per distinct price.
_ratio = lru_cache(maxsize=1024)(decimal_ratio)


_T = TypeVar("_T", Card, BreakerState)


def _copy(value: _T) -> _T:
    """A deep copy of a card or breaker state (they hold mutable dicts and lists)."""
    return msgspec.msgpack.decode(_enc.encode(value), type=type(value))
