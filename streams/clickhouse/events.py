"""The stored usage events, listed: the ``EventLog`` port on ClickHouse's ``usage_events``."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from streams.clickhouse.client import database_name
from streams.ports import StoredEvent


class ClickHouseEventLog:
    """Reads ``usage_events`` FINAL (one row per dedup identity, as totals read them), keyset-paged
    on the table's own order, so a page is one range read of the sorting key."""

    def __init__(self, client: Client, database: str = "billing") -> None:
        self.client = client
        self.db = database_name(database)

    def events(
        self,
        subscription_id: str,
        metric_code: str | None,
        start_ms: int,
        end_ms: int,
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> list[StoredEvent]:
        where = [
            "subscription_id = {sub:String}",
            "recorded_at >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC')",
            "recorded_at < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')",
        ]
        parameters: dict[str, Any] = {"sub": subscription_id, "lo": start_ms, "hi": end_ms, "n": limit}
        if metric_code is not None:
            where.append("metric_code = {metric:String}")
            parameters["metric"] = metric_code
        if after is not None:
            where.append(
                "(toUnixTimestamp64Milli(recorded_at), metric_code, idempotency_key)"
                " > ({at:Int64}, {m:String}, {k:String})"
            )
            parameters.update(at=after[0], m=after[1], k=after[2])
        result = self.client.query(
            f"""
            SELECT tenant_id, subscription_id, metric_code, toUnixTimestamp64Milli(recorded_at), idempotency_key,
                   event_id, value, metadata
            FROM {self.db}.usage_events FINAL
            WHERE {" AND ".join(where)}
            ORDER BY recorded_at, metric_code, idempotency_key
            LIMIT {{n:UInt32}}
            """,
            parameters=parameters,
        )
        return [
            StoredEvent(tenant, sub, metric, int(at), key, event_id, value, dict(metadata))
            for tenant, sub, metric, at, key, event_id, value, metadata in result.result_rows
        ]
