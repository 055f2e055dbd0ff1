"""ClickHouse's dedup defaults fail silently (design section 7); these show ours hold on chDB."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from streams.clickhouse.client import SESSION_SETTINGS
from streams.clickhouse.store import ClickHouseUsageStore
from streams.operators.records import UsageRecord

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
