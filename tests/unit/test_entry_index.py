"""EntryIndex against NaiveEntries directly: random sequences of add, remove, crossed and expired
give the same entries at every step, priority_order sorts what one tick crossed, and the
index's stale heap items stay bounded by its live entries."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tradingd.engine.entry_index import EntryIndex, NaiveEntries, meets, priority_order
from tradingd.engine.model import RestingEntry

from tests.unit.harness import TOKENS

# A coarse price grid: equal prices (ties, and ticks exactly at an entry's price) are common.
PRICES = [0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 2.0]


def entry(seq: int, token: str, kind: str, price: float, expires_at: int) -> RestingEntry:
    return RestingEntry(
        id=f"ent_{seq:06d}",
        seq=seq,
        agent_id="agt",
        signal_id=f"sig{seq}",
        token=token,
        symbol=None,
        type=kind,  # type: ignore[arg-type]
        price_usd=price,
        amount=1,
        quote="SOL",
        created_at=0,
        expires_at=expires_at,
    )


def ids(entries: list[RestingEntry]) -> list[str]:
    return sorted(e.id for e in entries)


def stale_items(index: EntryIndex) -> int:
    """Heap items of the index that name no live entry (white-box: its bound)."""
    books = index._books.values()
    items = [i for b in books for i in (*b.limits, *b.stops)] + list(index._expiries)
    return sum(1 for i in items if i[2] not in index._live)


op = st.one_of(
    st.tuples(
        st.just("add"),
        st.sampled_from(TOKENS),
        st.sampled_from(["limit", "stop"]),
        st.one_of(st.sampled_from(PRICES), st.floats(0.4, 2.5)),
        st.integers(0, 200),
    ),
    st.tuples(st.just("remove"), st.integers(0, 10**6)),
    st.tuples(st.just("crossed"), st.sampled_from(TOKENS), st.sampled_from(PRICES)),
    st.tuples(st.just("crossed"), st.sampled_from(TOKENS), st.floats(0.4, 2.5)),
    st.tuples(st.just("expired"), st.integers(0, 220)),
)


def replay(ops: list[tuple]) -> None:
    index, naive = EntryIndex(), NaiveEntries()
    live: dict[str, RestingEntry] = {}
    seq = 0
    for o in ops:
        if o[0] == "add":
            seq += 1
            e = entry(seq, o[1], o[2], o[3], o[4])
            index.add(e)
            naive.add(e)
            live[e.id] = e
        elif o[0] == "remove":
            if live:
                e = list(live.values())[o[1] % len(live)]
                for _ in range(1 + (o[1] % 4 == 0)):  # one time in four twice: then ignored
                    index.remove(e)
                    naive.remove(e)
                del live[e.id]
        elif o[0] == "crossed":
            got, want = index.crossed(o[1], o[2]), naive.crossed(o[1], o[2])
            assert ids(got) == ids(want)
            assert all(e.token == o[1] and meets(e, o[2]) for e in got)
            assert priority_order(got, o[2]) == priority_order(want, o[2])
            for e in got:
                del live[e.id]
        else:
            got, want = index.expired(o[1]), naive.expired(o[1])
            assert ids(got) == ids(want)
            assert all(e.expires_at < o[1] for e in got)
            for e in got:
                del live[e.id]
        assert len(index) == len(naive) == len(live)
        assert stale_items(index) == index._stale <= 2 * len(live) + 1024


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=120))
def test_index_and_naive_scan_pop_the_same_entries(ops):
    replay(ops)


def test_index_and_naive_scan_agree_on_a_long_random_sequence():
    rng = random.Random(15)
    ops: list[tuple] = []
    now = 0
    for _ in range(20_000):
        r = rng.random()
        if r < 0.45:
            kind = rng.choice(["limit", "stop"])
            ops.append(
                ("add", rng.choice(TOKENS), kind, rng.choice(PRICES), now + rng.randint(1, 500))
            )
        elif r < 0.7:
            ops.append(("remove", rng.randrange(10**6)))
        elif r < 0.95:
            ops.append(("crossed", rng.choice(TOKENS), rng.choice(PRICES)))
        else:
            now += rng.randint(1, 50)
            ops.append(("expired", now))
    replay(ops)


def test_a_limit_is_crossed_at_or_below_its_price_and_a_stop_at_or_above():
    lim, stop = entry(1, TOKENS[0], "limit", 0.9, 10), entry(2, TOKENS[0], "stop", 1.1, 10)
    assert [meets(lim, p) for p in (0.8, 0.9, 0.9000001)] == [True, True, False]
    assert [meets(stop, p) for p in (1.0999999, 1.1, 1.2)] == [False, True, True]


def test_priority_puts_the_entry_the_price_went_furthest_through_first_then_the_earlier():
    t = TOKENS[0]
    crossed = [
        entry(1, t, "limit", 0.9, 10),
        entry(2, t, "limit", 1.0, 10),
        entry(3, t, "stop", 0.8, 10),  # 0.05 through at 0.85
        entry(4, t, "limit", 1.0, 10),  # same as 2, later
        entry(5, t, "stop", 0.75, 10),  # 0.1 through
    ]
    assert [e.seq for e in priority_order(crossed, 0.85)] == [2, 4, 5, 1, 3]


def test_priority_between_kinds_is_exact_from_the_prices_as_written():
    # 0.3 - 0.1 and 0.5 - 0.3 are both 0.2 exactly as written (not as binary floats): a tie
    # that arrival (seq) decides.
    t = TOKENS[0]
    later_limit, earlier_stop = entry(2, t, "limit", 0.5, 10), entry(1, t, "stop", 0.1, 10)
    assert [e.seq for e in priority_order([later_limit, earlier_stop], 0.3)] == [1, 2]


def test_removing_entries_compacts_the_index_so_stale_items_stay_bounded():
    index = EntryIndex()
    entries = [entry(i, TOKENS[i % 3], "limit", 0.5 + (i % 7) / 10, 10**9) for i in range(20_000)]
    for e in entries:
        index.add(e)
    for e in entries[:19_990]:
        index.remove(e)
    assert len(index) == 10
    assert stale_items(index) <= 2 * 10 + 1024
    heap_items = sum(len(b.limits) + len(b.stops) for b in index._books.values())
    assert heap_items + len(index._expiries) <= 2 * (10 + 1024)


def test_crossing_and_expiring_everything_leaves_no_token_book_behind():
    index = EntryIndex()
    for i in range(5000):
        index.add(entry(i, TOKENS[0], "limit" if i % 2 else "stop", 1.0, 100))
    assert len(index.crossed(TOKENS[0], 1.0)) == 5000
    assert index.expired(101) == []
    assert len(index) == 0 and not index._books and len(index._expiries) <= 1024


def test_a_token_alternating_between_adds_and_crosses_keeps_its_heaps_bounded():
    index = EntryIndex()
    t = TOKENS[0]
    for i in range(50_000):
        index.add(entry(i, t, "limit", 1.0, 10**9))
        assert len(index.crossed(t, 1.0)) == 1
    # each crossed entry leaves its expiry item stale; compaction keeps them bounded
    assert len(index._expiries) <= 1024 and stale_items(index) == index._stale
