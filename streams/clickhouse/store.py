"""The usage store on ClickHouse (a server, or chDB in-process through the same client).

Writes are idempotent three times over: a deterministic ``insert_deduplication_token`` per batch
(block dedup; schema.sql enables it), ReplacingMergeTree keys (an event's identity, a window's key
with its version), and reads that see only the newest row of each key (``FINAL``). Reads are
batched: ``totals`` answers any number of ``[a, b)`` questions with two queries, aggregating the
whole 15-minute buckets inside ClickHouse (sums, extremes, latest, uniques, and the
time-weighted bridges between consecutive buckets through a window function) and fetching raw
events only for the ragged edges, which are merged in Python exactly as the memory store does.
The questions travel as bound array parameters, so their number is not limited by ``max_query_size``.

Why ``FINAL`` and not ``argMax``: docs/decisions/0003-newest-windows-with-final.md.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import defaultdict
from collections.abc import Sequence
from decimal import Context, Decimal, localcontext
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from rating.aggregations import Point, SummedTotals, WindowTotals
from streams.clickhouse.client import SESSION_SETTINGS, database_name
from streams.clickhouse.columns import (
    EVENT_IDENTITY,
    WINDOW_IDENTITY,
    check_event_table,
    check_window_table,
    event_columns,
    window_columns,
)
from streams.operators.intervals import UsageQuery, assemble, plan_read
from streams.operators.records import Reason, Rejection, UsageRecord
from streams.operators.windows import Granularity, WindowKey, WindowSpan, rollup_spans
from streams.ports import DeadLetter, WindowRow

EVENT_COLUMNS = (
    "tenant_id",
    "subscription_id",
    "metric_code",
    "idempotency_key",
    "event_id",
    "value",
    "recorded_at",
    "metadata",
    "unique_value",
)
WINDOW_COLUMNS = (
    "tenant_id",
    "subscription_id",
    "metric_code",
    "granularity",
    "window_start",
    "window_end",
    "version",
    "event_count",
    "total",
    "maximum",
    "latest_at",
    "latest_key",
    "latest_value",
    "latest_unique",
    "first_at",
    "first_key",
    "first_value",
    "first_unique",
    "tw_integral",
    "uniques",
    "hour_start",
    "day_start",
    "day_end",
    "month_start",
    "month_end",
)
LETTER_COLUMNS = (
    "reason",
    "detail",
    "field",
    "subscription_id",
    "idempotency_key",
    "original",
    "source_topic",
    "source_partition",
    "source_offset",
    "letter_key",
)
CHUNK = 100_000
EXACT = Context(prec=80)
"""Wide enough for every Decimal256(12) the tables hold: edge merges in Python never round."""

WINDOWS_OF_ONE_SERIES = (
    "subscription_id = {sub:String} AND metric_code = {metric:String} AND granularity = {gran:String} "
    "AND window_start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
    "AND window_start < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
)

Span = tuple[int, str, str, int, int]
"""(index, subscription_id, metric_code, start_ms, end_ms) of one part of a query to read."""
FEW_SPANS = 8
"""Up to this many spans, ``summed`` selects each on its own instead of joining a spans table."""


def token(kind: str, identity: Sequence[Sequence[Any]]) -> str:
    """Deterministic insert token of a batch from its rows' identity columns: an event's identity
    (subscription, idempotency key) fixes its payload (first write wins) and a window's key and
    version fix its totals, so the same identities mean the same rows and one stored block.
    Column by column, integers as their 8-byte machine values: a join per row, or ``str`` per
    number, cost a fifth of the write."""
    digest = hashlib.blake2b(kind.encode(), digest_size=20)
    for column in identity:
        if column and isinstance(column[0], int):
            digest.update(array("q", column).tobytes())
        else:
            digest.update("\x1f".join(map(str, column)).encode())
        digest.update(b"\x1d")
    return digest.hexdigest()


def _values(array: pa.Array, width: int) -> memoryview:
    """The bytes of a fixed-width array's values, exactly its slice (no padding, no neighbours)."""
    values = array.buffers()[1]
    assert values is not None  # a fixed-width array always has its values buffer
    return memoryview(values)[array.offset * width : (array.offset + len(array)) * width]


def table_token(kind: str, table: pa.Table, identity: Sequence[str]) -> str:
    """``token`` of an Arrow table, from the raw values of its ``identity`` columns: integers and
    instants as 8-byte values, strings as their offsets (from 0) and bytes; no Python value per row.
    Deterministic whatever the table's chunks or slicing, and different whenever an identity differs."""
    digest = hashlib.blake2b(kind.encode(), digest_size=20)
    for name in identity:
        column = table.column(name).combine_chunks()
        if pa.types.is_string(column.type):
            _, offsets, data = column.buffers()
            assert offsets is not None and data is not None  # a string array always has both
            ends = pa.Array.from_buffers(pa.int32(), len(column) + 1, [None, offsets], offset=column.offset)
            first, last = ends[0].as_py(), ends[-1].as_py()
            digest.update(_values(pc.subtract(ends, pa.scalar(first, pa.int32())), 4))
            digest.update(memoryview(data)[first:last])
        else:
            digest.update(_values(column.cast(pa.int64()), 8))
        digest.update(b"\x1d")
    return digest.hexdigest()


def _point(parts: tuple[Any, ...] | None) -> Point | None:
    if parts is None or parts[0] is None:
        return None
    at_ms, key, value, unique = parts
    return Point(int(at_ms), key, value, unique)


class ClickHouseUsageStore:
    def __init__(self, client: Client, database: str = "billing") -> None:
        self.client = client
        self.db = database_name(database)

    # -- writes ---------------------------------------------------------------------------------

    def _insert(self, table: str, columns: dict[str, pa.Array], identity: Sequence[Sequence[Any]]) -> None:
        """Insert Arrow columns in chunks, each with the token of its rows' ``identity`` columns.

        Arrow, not the client's row or column lists: clickhouse-connect serializes those value by
        value in Python (its Decimal writer alone took a fifth of bench/pipeline.py), where pyarrow
        builds each column in C and ClickHouse reads the batch as is (docs/streaming.md)."""
        batch = pa.table(columns)
        for start in range(0, batch.num_rows, CHUNK):
            chunk_token = token(table, [column[start : start + CHUNK] for column in identity])
            settings = {**SESSION_SETTINGS, "insert_deduplication_token": chunk_token}
            self.client.insert_arrow(f"{self.db}.{table}", batch.slice(start, CHUNK), settings=settings)

    def write(self, records: Sequence[UsageRecord], windows: Sequence[WindowRow]) -> None:
        if records:
            self._insert(
                "usage_events",
                event_columns(records),
                [
                    [r.subscription_id for r in records],
                    [r.metric_code for r in records],
                    [r.idempotency_key for r in records],
                ],
            )
        if windows:
            for w in windows:
                if w.key.granularity is not Granularity.QUARTER or len(w.rollups) != 3:
                    raise ValueError(
                        f"window {w.key}: only 15-minute buckets with their hour, day and month are written; "
                        "roll-ups are folded from them (usage_rollups)"
                    )
            self._insert(
                "usage_windows",
                window_columns(windows),
                [
                    *zip(*(w.key for w in windows), strict=True),
                    [w.end_ms for w in windows],
                    [w.version for w in windows],
                ],
            )

    def write_window_table(self, table: pa.Table) -> None:
        """Insert bucket rows given as Arrow columns (``WINDOW_SCHEMA``, e.g. a ``usage.windows``
        batch message's) as they are: no Python value per row. Rows may hold older versions of a
        bucket; the table keeps the highest (ReplacingMergeTree by version, read with FINAL)."""
        check_window_table(table)
        self._insert_table("usage_windows", table, WINDOW_IDENTITY)

    def write_event_table(self, table: pa.Table) -> None:
        """Insert accepted records given as Arrow columns (``EVENT_SCHEMA``, e.g. a ``usage.accepted``
        batch message's) as they are: no Python value per row. A record stored before, in either
        shape, is stored once (ReplacingMergeTree by identity, read as distinct events)."""
        check_event_table(table)
        self._insert_table("usage_events", table, EVENT_IDENTITY)

    def _insert_table(self, name: str, table: pa.Table, identity: Sequence[str]) -> None:
        """``table`` in chunks, each with the token of its ``identity`` columns' raw buffers."""
        for start in range(0, table.num_rows, CHUNK):
            chunk = table.slice(start, CHUNK)
            settings = {**SESSION_SETTINGS, "insert_deduplication_token": table_token(name, chunk, identity)}
            self.client.insert_arrow(f"{self.db}.{name}", chunk, settings=settings)

    # -- reads ----------------------------------------------------------------------------------

    def windows(
        self, subscription_id: str, metric_code: str, granularity: Granularity, start_ms: int, end_ms: int
    ) -> list[WindowRow]:
        bucket = granularity is Granularity.QUARTER
        spans = ", ".join(f"toUnixTimestamp64Milli({column})" if bucket else "NULL" for column in WINDOW_COLUMNS[-5:])
        result = self.client.query(
            f"""
            SELECT tenant_id, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end), version,
                   event_count, total, maximum,
                   toUnixTimestamp64Milli(latest_at), latest_key, latest_value, latest_unique,
                   toUnixTimestamp64Milli(first_at), first_key, first_value, first_unique,
                   tw_integral, uniques, {spans}
            FROM ({self._newest_windows(WINDOWS_OF_ONE_SERIES, granularity)})
            ORDER BY window_start
            """,
            parameters={
                "sub": subscription_id,
                "metric": metric_code,
                "gran": str(granularity),
                "lo": start_ms,
                "hi": end_ms,
            },
        )
        rows = []
        for tenant, start, end, version, count, total, maximum, *rest in result.result_rows:
            latest = _point(tuple(rest[0:4]))
            first = _point(tuple(rest[4:8]))
            totals = WindowTotals(count, total, maximum, latest, first, latest, rest[8], frozenset(rest[9]))
            key = WindowKey(subscription_id, metric_code, granularity, int(start))
            rollups: tuple[WindowSpan, ...] = ()
            if rest[10] is not None:
                rollups = rollup_spans(*map(int, rest[10:15]))
            rows.append(WindowRow(key, tenant, int(end), int(version), totals, rollups))
        return rows

    def _newest_windows(self, where: str, granularity: Granularity = Granularity.QUARTER) -> str:
        """The newest version of each window that ``where`` (on key columns only) selects: buckets
        from the table, roll-ups from the view that folds them."""
        if granularity is Granularity.QUARTER:
            return f"SELECT * FROM {self.db}.usage_windows FINAL WHERE {where}"
        return f"SELECT * FROM {self.db}.usage_rollups WHERE {where}"

    def _distinct_events(self, where: str) -> str:
        """One row per dedup identity among the events ``where`` (on key columns only) selects."""
        return (
            "SELECT subscription_id, metric_code, recorded_at, idempotency_key, value, unique_value "
            f"FROM {self.db}.usage_events FINAL WHERE {where}"
        )

    @staticmethod
    def _spans(spans: list[Span], time_column: str, prefix: str = "") -> tuple[str, str, dict[str, Any]]:
        """The spans as a subquery ``q(i, sub, metric, lo, hi)``, a WHERE clause on the primary key
        that bounds what the join with them reads, and the parameters both bind. Bound arrays, not
        SQL literals: thousands of spans would exceed ``max_query_size`` (256 KiB) as literals.
        ``prefix`` names the parameters apart when one query joins two sets of spans."""
        table = (
            "(SELECT s.1 AS i, s.2 AS sub, s.3 AS metric, s.4 AS lo, s.5 AS hi FROM (SELECT arrayJoin(arrayZip("
            "{i:Array(UInt32)}, {sub:Array(String)}, {metric:Array(String)}, {lo:Array(Int64)}, {hi:Array(Int64)}"
            ")) AS s))"
        )
        where = (
            f"subscription_id IN {{subs:Array(String)}} AND metric_code IN {{metrics:Array(String)}} "
            f"AND {time_column} >= fromUnixTimestamp64Milli({{lo_all:Int64}}, 'UTC') "
            f"AND {time_column} < fromUnixTimestamp64Milli({{hi_all:Int64}}, 'UTC')"
        )
        ids, subs, metrics, los, his = (list(column) for column in zip(*spans, strict=True))
        parameters = {
            "i": ids,
            "sub": subs,
            "metric": metrics,
            "lo": los,
            "hi": his,
            "subs": sorted(set(subs)),
            "metrics": sorted(set(metrics)),
            "lo_all": min(los),
            "hi_all": max(his),
        }
        if prefix:
            for name in parameters:
                table = table.replace(f"{{{name}:", f"{{{prefix}{name}:")
                where = where.replace(f"{{{name}:", f"{{{prefix}{name}:")
            parameters = {prefix + name: value for name, value in parameters.items()}
        return table, where, parameters

    def totals(self, queries: Sequence[UsageQuery]) -> list[WindowTotals]:
        plans = [plan_read(q.start_ms, q.end_ms) for q in queries]
        bucket_spans = [
            (i, q.subscription_id, q.metric_code, *p.buckets)
            for i, (q, p) in enumerate(zip(queries, plans, strict=True))
            if p.buckets[0] < p.buckets[1]
        ]
        edge_spans = [
            (i * 2 + side, q.subscription_id, q.metric_code, *span)
            for i, (q, p) in enumerate(zip(queries, plans, strict=True))
            for side, span in enumerate((p.left, p.right))
            if span[0] < span[1]
        ]
        buckets = self._bucket_totals(bucket_spans)
        edges = self._edge_points(edge_spans)
        # Python's default context keeps 28 digits; a Decimal128(12) sum or a value × Δms has up to 76.
        with localcontext(EXACT):
            return [
                assemble(edges.get(i * 2, ()), [buckets[i]] if i in buckets else (), edges.get(i * 2 + 1, ()))
                for i in range(len(queries))
            ]

    def summed(self, queries: Sequence[UsageQuery]) -> list[SummedTotals]:
        """The event count, total and maximum of each ``[a, b)``, and nothing else: what SUM, COUNT
        and MAX need (``rating.aggregations``), in one query that adds up, inside ClickHouse, the
        whole buckets and the raw distinct events of the ragged edges (in Decimal256, exact), so
        no window, point or event travels to Python. Equal, value and exponent, to what ``totals``
        gives for those fields (tests/integration/test_clickhouse_summed.py)."""
        plans = [plan_read(q.start_ms, q.end_ms) for q in queries]
        buckets: list[Span] = []
        edges: list[Span] = []
        for i, (q, p) in enumerate(zip(queries, plans, strict=True)):
            if p.buckets[0] < p.buckets[1]:
                buckets.append((i, q.subscription_id, q.metric_code, *p.buckets))
            edges += [(i, q.subscription_id, q.metric_code, *span) for span in (p.left, p.right) if span[0] < span[1]]
        parts: list[str] = []
        parameters: dict[str, Any] = {}
        if len(buckets) + len(edges) <= FEW_SPANS:  # a current-usage read: no spans table to join
            self._summed_each(buckets, edges, parts, parameters)
            buckets = edges = []
        if buckets:
            table, where, bound = self._spans(buckets, "window_start", "b_")
            parameters.update(bound)
            parts.append(
                f"""
                SELECT q.i AS i, w.event_count AS c, toDecimal256(w.total, 12) AS t, w.maximum AS m
                FROM {table} AS q
                INNER JOIN ({self._newest_windows(f"granularity = '15m' AND {where}")}) AS w
                    ON w.subscription_id = q.sub AND w.metric_code = q.metric
                WHERE w.event_count > 0
                  AND toUnixTimestamp64Milli(w.window_start) >= q.lo AND toUnixTimestamp64Milli(w.window_start) < q.hi
                """
            )
        if edges:
            table, where, bound = self._spans(edges, "recorded_at", "e_")
            parameters.update(bound)
            parts.append(
                f"""
                SELECT q.i AS i, toUInt64(1) AS c, toDecimal256(e.value, 12) AS t, toNullable(e.value) AS m
                FROM {table} AS q
                INNER JOIN ({self._distinct_events(where)}) AS e
                    ON e.subscription_id = q.sub AND e.metric_code = q.metric
                WHERE toUnixTimestamp64Milli(e.recorded_at) >= q.lo AND toUnixTimestamp64Milli(e.recorded_at) < q.hi
                """
            )
        out = [SummedTotals()] * len(queries)
        if not parts:
            return out
        sql = f"SELECT i, sum(c), sum(t), max(m) FROM ({' UNION ALL '.join(parts)}) GROUP BY i"
        for i, count, total, maximum in self.client.query(sql, parameters=parameters).result_rows:
            if count:
                out[int(i)] = SummedTotals(int(count), total, maximum)
        return out

    def _summed_each(
        self, buckets: list[Span], edges: list[Span], parts: list[str], parameters: dict[str, Any]
    ) -> None:
        """``summed``'s parts for a few spans: one SELECT per span, its bounds in the WHERE clause on
        the primary key (what a join with a spans table costs is most of a single read's time)."""
        for kind, spans in (("b", buckets), ("e", edges)):
            for n, (i, sub, metric, lo, hi) in enumerate(spans):
                name = f"{kind}{n}_"
                parameters.update({f"{name}sub": sub, f"{name}metric": metric, f"{name}lo": lo, f"{name}hi": hi})
                column = "window_start" if kind == "b" else "recorded_at"
                where = (
                    f"subscription_id = {{{name}sub:String}} AND metric_code = {{{name}metric:String}} "
                    f"AND {column} >= fromUnixTimestamp64Milli({{{name}lo:Int64}}, 'UTC') "
                    f"AND {column} < fromUnixTimestamp64Milli({{{name}hi:Int64}}, 'UTC')"
                )
                # straight FROM the table FINAL, not through a ``SELECT *`` subquery (a third slower);
                # FINAL as in _newest_windows and _distinct_events. The WHERE names key columns only
                # (a condition on another column could be applied before FINAL picks the newest
                # version): a window without events adds nothing, as when it is filtered out.
                if kind == "b":
                    parts.append(
                        f"SELECT toUInt32({i}) AS i, event_count AS c, "
                        f"if(event_count > 0, toDecimal256(total, 12), toDecimal256(0, 12)) AS t, "
                        f"if(event_count > 0, maximum, NULL) AS m "
                        f"FROM {self.db}.usage_windows FINAL WHERE granularity = '15m' AND {where}"
                    )
                else:
                    parts.append(
                        f"SELECT toUInt32({i}) AS i, toUInt64(1) AS c, toDecimal256(value, 12) AS t, "
                        f"toNullable(value) AS m FROM {self.db}.usage_events FINAL WHERE {where}"
                    )

    def _bucket_totals(self, spans: list[Span]) -> dict[int, WindowTotals]:
        """Each span's whole buckets merged into one WindowTotals, in ClickHouse."""
        if not spans:
            return {}
        spans_table, where, parameters = self._spans(spans, "window_start")
        sql = f"""
            SELECT i,
                   sum(event_count), sum(toDecimal256(total, 12)), max(maximum),
                   argMax((latest_ms, latest_key, latest_value, latest_unique), (latest_ms, latest_key)),
                   argMin((first_ms, first_key, first_value, first_unique), (first_ms, first_key)),
                   groupUniqArrayArray(uniques),
                   sum(tw_integral) + sum(bridge)
            FROM (
                SELECT q.i AS i, w.event_count AS event_count, w.total AS total, w.maximum AS maximum,
                       toUnixTimestamp64Milli(w.latest_at) AS latest_ms, w.latest_key AS latest_key,
                       w.latest_value AS latest_value, w.latest_unique AS latest_unique,
                       toUnixTimestamp64Milli(w.first_at) AS first_ms, w.first_key AS first_key,
                       w.first_value AS first_value, w.first_unique AS first_unique,
                       w.uniques AS uniques, w.tw_integral AS tw_integral,
                       row_number() OVER previous AS n,
                       lagInFrame(w.latest_value, 1) OVER previous AS prev_value,
                       lagInFrame(toUnixTimestamp64Milli(w.latest_at), 1) OVER previous AS prev_ms,
                       if(n = 1, toDecimal256(0, 12),
                          toDecimal256(assumeNotNull(prev_value), 12)
                              * (assumeNotNull(first_ms) - assumeNotNull(prev_ms))) AS bridge
                FROM {spans_table} AS q
                INNER JOIN ({self._newest_windows(f"granularity = '15m' AND {where}")}) AS w
                    ON w.subscription_id = q.sub AND w.metric_code = q.metric
                WHERE w.event_count > 0
                  AND toUnixTimestamp64Milli(w.window_start) >= q.lo AND toUnixTimestamp64Milli(w.window_start) < q.hi
                WINDOW previous AS (PARTITION BY q.i ORDER BY w.window_start ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
            GROUP BY i
        """
        out = {}
        for i, count, total, maximum, latest, first, uniques, integral in self.client.query(
            sql, parameters=parameters
        ).result_rows:
            last = _point(latest)
            out[int(i)] = WindowTotals(
                int(count), total, maximum, last, _point(first), last, Decimal(integral), frozenset(uniques)
            )
        return out

    def _edge_points(self, spans: list[Span]) -> dict[int, list[Point]]:
        """Raw distinct events of each edge span."""
        if not spans:
            return {}
        spans_table, where, parameters = self._spans(spans, "recorded_at")
        sql = f"""
            SELECT q.i, toUnixTimestamp64Milli(e.recorded_at) AS at_ms, e.idempotency_key, e.value, e.unique_value
            FROM {spans_table} AS q
            INNER JOIN ({self._distinct_events(where)}) AS e ON e.subscription_id = q.sub AND e.metric_code = q.metric
            WHERE at_ms >= q.lo AND at_ms < q.hi
        """
        out: dict[int, list[Point]] = defaultdict(list)
        for i, at_ms, key, value, unique in self.client.query(sql, parameters=parameters).result_rows:
            out[int(i)].append(Point(int(at_ms), key, value, unique))
        return out


class ClickHouseDeadLetters:
    """Rejected events, kept with their reason and original bytes (``dead_letters``)."""

    def __init__(self, client: Client, database: str = "billing") -> None:
        self.client = client
        self.db = database_name(database)

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        rows = []
        for letter in letters:
            r = letter.rejection
            fields = (str(r.reason), r.detail, r.field or "", r.subscription_id or "", r.idempotency_key or "")
            key = hashlib.blake2b(repr((fields, letter.original)).encode(), digest_size=12).hexdigest()
            rows.append(
                [
                    *fields,
                    letter.original,
                    letter.source_topic,
                    letter.source_partition,
                    letter.source_offset,
                    key,
                ]
            )
        settings = {
            **SESSION_SETTINGS,
            "insert_deduplication_token": token("dead_letters", list(zip(*rows, strict=True))),
        }
        self.client.insert(f"{self.db}.dead_letters", rows, column_names=list(LETTER_COLUMNS), settings=settings)

    def letters(self, reason: Reason | None = None) -> list[DeadLetter]:
        """The stored letters (of one ``reason`` if given), each once, ordered by source position;
        ``original`` comes back byte for byte (it is read as bytes, never decoded)."""
        where = "" if reason is None else "WHERE reason = {reason:String}"
        result = self.client.query(
            f"SELECT {', '.join(LETTER_COLUMNS[:-1])} FROM {self.db}.dead_letters FINAL {where} "
            "ORDER BY source_topic, source_partition, source_offset, field, letter_key",
            parameters={} if reason is None else {"reason": str(reason)},
            column_formats={"original": "bytes"},
        )
        out = []
        for why, detail, field, sub, key, original, topic, partition, offset in result.result_rows:
            rejection = Rejection(Reason(why), detail, field or None, sub or None, key or None)
            out.append(DeadLetter(rejection, bytes(original), topic, int(partition), int(offset)))
        return out

    def counts(self) -> dict[str, int]:
        rows = self.client.query(
            f"SELECT reason, count() FROM {self.db}.dead_letters FINAL GROUP BY reason"
        ).result_rows
        return {reason: int(count) for reason, count in rows}
