"""The metrics' reason label (adapters/metrics.py `_reason_label`): an engine code as itself,
anything else as "other", memoized for codes only so venue free text is never kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tradingd.adapters import metrics


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.from_regex(r"[a-z][a-z0-9_]{0,50}", fullmatch=True)))
def test_a_reason_is_labelled_itself_only_when_it_is_an_engine_code(reason: str) -> None:
    expected = reason if metrics.REASON_CODE.fullmatch(reason) else "other"
    assert metrics._reason_label(reason) == expected
    assert metrics._reason_label(reason) == expected  # again, from the memo
    assert len(metrics._REASON_LABELS) <= metrics.MAX_REASON_LABELS


def test_venue_free_text_is_not_kept_and_codes_are_still_memoized_after_it() -> None:
    metrics._REASON_LABELS.clear()
    for i in range(1000):  # a venue's error texts, each with its own order id
        assert metrics._reason_label(f"Venue error: order {i} rejected") == "other"
    assert metrics._REASON_LABELS == {}
    assert metrics._reason_label("strength_below_min") == "strength_below_min"
    assert "strength_below_min" in metrics._REASON_LABELS
