"""The insert token of a window table (``table_token``): the same rows give the same token however
the table is chunked or sliced (a replayed sink batch is one stored block), and any other key or
version gives another."""

from __future__ import annotations

import pyarrow as pa
import pytest

from streams.clickhouse.columns import WINDOW_IDENTITY, window_table
from streams.clickhouse.store import table_token
from tests.unit.test_kafka_messages import bucket

pytestmark = pytest.mark.unit


def test_the_same_rows_give_the_same_token_whatever_the_chunks_and_slices() -> None:
    rows = [bucket(f"sub-{n}", version=n + 1) for n in range(6)]
    whole = window_table(rows[1:5])
    sliced = window_table(rows).slice(1, 4)
    chunked = pa.concat_tables([window_table(rows[1:2]), window_table(rows[2:5])])
    tokens = {table_token("usage_windows", t, WINDOW_IDENTITY) for t in (whole, sliced, chunked)}
    assert len(tokens) == 1


def test_another_key_or_version_gives_another_token() -> None:
    rows = [bucket(f"sub-{n}", version=n + 1) for n in range(3)]
    base = table_token("usage_windows", window_table(rows), WINDOW_IDENTITY)
    changed = [
        [rows[0], rows[1], rows[2]._replace(version=9)],
        [rows[0], rows[1], rows[2]._replace(key=rows[2].key._replace(subscription_id="sub-9"))],
        [rows[0], rows[1], rows[2]._replace(key=rows[2].key._replace(start_ms=rows[2].key.start_ms + 900_000))],
        [rows[1], rows[0], rows[2]],
        rows[:2],
    ]
    others = {table_token("usage_windows", window_table(r), WINDOW_IDENTITY) for r in changed}
    assert base not in others and len(others) == len(changed)
    # strings cut at another place are other identities: "ab","c" is not "a","bc"
    left = [bucket("ab"), bucket("c")]
    right = [bucket("a"), bucket("bc")]
    assert table_token("t", window_table(left), WINDOW_IDENTITY) != table_token(
        "t", window_table(right), WINDOW_IDENTITY
    )
