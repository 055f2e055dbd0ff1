"""Hypothesis properties of the door's limits: the worker's fast path agrees with the exact checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.limits import MAX_CODE, MAX_KEY, metadata_problem, text_problem
from streams.operators.records import UsageEvent
from streams.operators.validate import _beyond_limits, _within_limits

pytestmark = pytest.mark.property

# Mostly printable text near the limits, sometimes with controls, blanks or surrogates.
alphabet = st.one_of(st.sampled_from("ab1_-. é🙂"), st.sampled_from(" \t\n\x00\x1f\x7f\x85\x9f\ud800"), st.characters())
short = st.text(alphabet, max_size=4)
near = st.one_of(short, st.builds(lambda n, c: c * n, st.sampled_from([63, 64, 65, 127, 128, 129, 256, 257]), alphabet))


@settings(max_examples=400)
@given(
    texts=st.tuples(near, near, near, near, near),
    metadata=st.dictionaries(
        near, st.one_of(short, st.builds(lambda n: "v" * n, st.integers(1020, 1030))), max_size=34
    ),
)
def test_the_fast_path_accepts_exactly_what_the_exact_checks_accept(
    texts: tuple[str, str, str, str, str], metadata: dict[str, str]
) -> None:
    event = UsageEvent(texts[0], texts[1], texts[2], texts[3], 1.0, 0, texts[4], metadata)
    limits = (MAX_KEY, MAX_CODE, MAX_CODE, MAX_CODE, MAX_KEY)
    exact = all(text_problem(t, n) is None for t, n in zip(texts, limits, strict=True) if t) and (
        not metadata or metadata_problem(metadata) is None
    )
    assert (_beyond_limits(event) is None) == exact
    if _within_limits(event):
        assert exact
