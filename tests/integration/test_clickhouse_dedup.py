"""ClickHouse's dedup defaults fail silently (design section 7); these show ours hold on chDB."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rating.aggregations import Point, totals_of
from streams.clickhouse.client import SESSION_SETTINGS
from streams.clickhouse.store import ClickHouseUsageStore
from streams.operators.intervals import UsageQuery
from streams.operators.records import UsageRecord
from streams.operators.windows import Granularity, WindowKey, rollup_windows
from streams.ports import WindowRow

pytestmark = pytest.mark.integration

BASE_MS = 1_767_225_600_000


def records(n: int) -> list[UsageRecord]:
    return [UsageRecord(f"e{i}", "t", "s", "m", Decimal("1.5"), BASE_MS + i, f"k{i}", {}) for i in range(n)]


def test_a_replayed_batch_is_one_block(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    store.write(records(10), [])
    store.write(records(10), [])
    plain = chdb_client.query(f"SELECT count(), sum(value) FROM {clickhouse_db}.usage_events").result_rows[0]
    assert plain == (10, Decimal(15))  # not even the unmerged table holds the replay


def test_a_replay_cut_differently_is_collapsed_by_final(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    store.write(records(10), [])
    store.write(records(10)[3:], [])  # another batch: another token, so block dedup lets it in
    plain = chdb_client.query(f"SELECT sum(value) FROM {clickhouse_db}.usage_events").result_rows[0][0]
    final = chdb_client.query(f"SELECT sum(value) FROM {clickhouse_db}.usage_events FINAL").result_rows[0][0]
    assert plain == Decimal("25.5")  # the plain sum counts versions not yet merged ...
    assert final == Decimal(15)  # ... which is why every read of ours goes through FINAL


def test_session_turns_async_insert_off(chdb_client: Any) -> None:
    assert SESSION_SETTINGS["async_insert"] == 0
    value = chdb_client.query("SELECT value FROM system.settings WHERE name = 'async_insert'").result_rows[0][0]
    assert value == "0"


def active_parts(client: Any, database: str, table: str) -> int:
    return int(
        client.query(
            "SELECT count() FROM system.parts WHERE database = {db:String} AND table = {table:String} AND active",
            parameters={"db": database, "table": table},
        ).result_rows[0][0]
    )


def test_a_replayed_batch_writes_no_second_part(chdb_client: Any, clickhouse_db: str) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    store.write(records(10), [])
    store.write(records(10), [])
    assert active_parts(chdb_client, clickhouse_db, "usage_events") == 1
    store.write(records(11), [])  # other content, other token: a new part
    assert active_parts(chdb_client, clickhouse_db, "usage_events") == 2


def test_the_token_alone_is_ignored_without_the_dedup_window(chdb_client: Any, clickhouse_db: str) -> None:
    """Why schema.sql sets non_replicated_deduplication_window: without it the same token inserts twice."""
    chdb_client.command(
        f"CREATE TABLE {clickhouse_db}.plain (k String, v Decimal128(12)) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 0"
    )
    settings = {**SESSION_SETTINGS, "insert_deduplication_token": "same"}
    for _ in range(2):
        chdb_client.insert(
            f"{clickhouse_db}.plain", [["a", Decimal("1.5")]], column_names=["k", "v"], settings=settings
        )
    assert chdb_client.query(f"SELECT sum(v) FROM {clickhouse_db}.plain").result_rows[0][0] == Decimal(3)
    assert active_parts(chdb_client, clickhouse_db, "plain") == 2


def test_unmerged_window_versions_add_up_in_a_plain_sum_but_not_in_our_reads(
    chdb_client: Any, clickhouse_db: str
) -> None:
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    key = WindowKey("s", "m", Granularity.QUARTER, BASE_MS)

    def row(version: int, total: str) -> WindowRow:
        point = Point(BASE_MS + version, f"k{version}", Decimal(total))
        totals = totals_of([point])._replace(event_count=version, total=Decimal(total))
        return WindowRow(key, "t", BASE_MS + 900_000, version, totals, rollup_windows(BASE_MS, "UTC")[1:])

    store.write([], [row(1, "7.5")])
    store.write([], [row(2, "5")])
    plain = chdb_client.query(f"SELECT sum(total) FROM {clickhouse_db}.usage_windows").result_rows[0][0]
    assert plain == Decimal("12.5")  # design section 7: 12.5 where FINAL gives 5
    [totals] = store.totals([UsageQuery("s", "m", BASE_MS, BASE_MS + 900_000)])
    assert (totals.event_count, totals.total) == (2, Decimal(5))
    assert store.windows("s", "m", Granularity.QUARTER, BASE_MS, BASE_MS + 1) == [row(2, "5")]
