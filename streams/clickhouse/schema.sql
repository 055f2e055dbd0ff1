-- Usage store of design sections 3 and 7. One statement per ';', each idempotent; {db} is replaced
-- by a database name validated as an identifier (streams.clickhouse.client.ensure_schema).
-- The same SQL runs on chDB and on a ClickHouse server.
--
-- Dedup happens twice, and reads trust neither alone:
--   * block dedup on insert: non_replicated_deduplication_window plus a deterministic
--     insert_deduplication_token per batch make a replayed batch a no-op (off by default on
--     non-replicated tables: without the window setting the token is silently ignored);
--   * ReplacingMergeTree collapses what block dedup misses (a replay cut into different batches),
--     but only at merge time, so every read goes through FINAL (see store.py for the measurement
--     behind that choice); a plain sum() over these tables counts unmerged versions.

CREATE DATABASE IF NOT EXISTS {db};

-- Raw distinct events, one row per dedup identity (subscription_id, idempotency_key). The identity
-- always comes with the same metric and recorded_at (first write wins upstream), so the sort key
-- below holds each identity once and a replayed event collapses into its first copy.
CREATE TABLE IF NOT EXISTS {db}.usage_events
(
    tenant_id       LowCardinality(String),
    subscription_id String,
    metric_code     LowCardinality(String),
    idempotency_key String,
    event_id        String,
    value           Decimal128(12),
    recorded_at     DateTime64(3, 'UTC'),
    metadata        Map(String, String),
    unique_value    Nullable(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (subscription_id, metric_code, recorded_at, idempotency_key)
SETTINGS non_replicated_deduplication_window = 1000;

-- Absolute totals of one 15-minute bucket at a version (its count of distinct events): the newest
-- version wins, so rewriting a bucket after a replay is harmless. Points (first, latest) are stored
-- as their four parts; ``last`` of WindowTotals is ``latest``. tw_integral is Σ value × Δms, which
-- outgrows Decimal128 (26 integer digits) long before a value does, hence Decimal256. Each bucket
-- carries the local hour, day and month it rolls up into (usage_rollups below folds them); the
-- granularity column stays for rows of the old workers, which also wrote roll-ups here.
CREATE TABLE IF NOT EXISTS {db}.usage_windows
(
    tenant_id       LowCardinality(String),
    subscription_id String,
    metric_code     LowCardinality(String),
    granularity     LowCardinality(String),
    window_start    DateTime64(3, 'UTC'),
    window_end      DateTime64(3, 'UTC'),
    version         UInt64,
    event_count     UInt64,
    total           Decimal128(12),
    maximum         Nullable(Decimal128(12)),
    latest_at       Nullable(DateTime64(3, 'UTC')),
    latest_key      Nullable(String),
    latest_value    Nullable(Decimal128(12)),
    latest_unique   Nullable(String),
    first_at        Nullable(DateTime64(3, 'UTC')),
    first_key       Nullable(String),
    first_value     Nullable(Decimal128(12)),
    first_unique    Nullable(String),
    tw_integral     Decimal256(12),
    uniques         Array(String),
    hour_start      Nullable(DateTime64(3, 'UTC')),
    day_start       Nullable(DateTime64(3, 'UTC')),
    day_end         Nullable(DateTime64(3, 'UTC')),
    month_start     Nullable(DateTime64(3, 'UTC')),
    month_end       Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (subscription_id, metric_code, granularity, window_start)
SETTINGS non_replicated_deduplication_window = 1000;

-- A store created before the roll-up columns: add them (its old buckets have none, so roll-ups
-- are folded from the buckets written since; replay usage.windows to fold the older ones).
ALTER TABLE {db}.usage_windows ADD COLUMN IF NOT EXISTS hour_start Nullable(DateTime64(3, 'UTC'));
ALTER TABLE {db}.usage_windows ADD COLUMN IF NOT EXISTS day_start Nullable(DateTime64(3, 'UTC'));
ALTER TABLE {db}.usage_windows ADD COLUMN IF NOT EXISTS day_end Nullable(DateTime64(3, 'UTC'));
ALTER TABLE {db}.usage_windows ADD COLUMN IF NOT EXISTS month_start Nullable(DateTime64(3, 'UTC'));
ALTER TABLE {db}.usage_windows ADD COLUMN IF NOT EXISTS month_end Nullable(DateTime64(3, 'UTC'));

-- Hours, days and months (in the subscription's timezone), folded at read time from the newest
-- version of each bucket: sums, extremes, first and latest, the union of unique values, and the
-- time-weighted integral with the bridge from each bucket's latest point to the next bucket's
-- first. version is the roll-up's count of distinct events. Exact: the same merge as the memory
-- store's (rating.aggregations.merge), held to it by tests/contract/test_usage_store.py.
CREATE VIEW IF NOT EXISTS {db}.usage_rollups AS
SELECT tenant_id, subscription_id, metric_code, granularity, window_start, window_end, version, event_count,
       total, maximum, latest.1 AS latest_at, latest.2 AS latest_key, latest.3 AS latest_value,
       latest.4 AS latest_unique, first.1 AS first_at, first.2 AS first_key, first.3 AS first_value,
       first.4 AS first_unique, tw_integral, uniques
FROM (
    SELECT any(b_tenant) AS tenant_id, b_sub AS subscription_id, b_metric AS metric_code,
           r_granularity AS granularity, r_start AS window_start, r_end AS window_end,
           sum(b_count) AS version, sum(b_count) AS event_count, sum(toDecimal256(b_total, 12)) AS total,
           max(b_maximum) AS maximum,
           argMax(tuple(b_latest_at, b_latest_key, b_latest_value, b_latest_unique), tuple(b_latest_at, b_latest_key)) AS latest,
           argMin(tuple(b_first_at, b_first_key, b_first_value, b_first_unique), tuple(b_first_at, b_first_key)) AS first,
           sum(b_integral) + sum(b_bridge) AS tw_integral,
           arraySort(groupUniqArrayArray(b_uniques)) AS uniques
    FROM (
        SELECT tenant_id AS b_tenant, subscription_id AS b_sub, metric_code AS b_metric,
               event_count AS b_count, total AS b_total, maximum AS b_maximum,
               latest_at AS b_latest_at, latest_key AS b_latest_key, latest_value AS b_latest_value,
               latest_unique AS b_latest_unique, first_at AS b_first_at, first_key AS b_first_key,
               first_value AS b_first_value, first_unique AS b_first_unique,
               toDecimal256(tw_integral, 12) AS b_integral, uniques AS b_uniques,
               rollup.1 AS r_granularity, rollup.2 AS r_start, rollup.3 AS r_end,
               if(row_number() OVER bucket_before = 1, toDecimal256(0, 12),
                  toDecimal256(assumeNotNull(lagInFrame(latest_value, 1) OVER bucket_before), 12)
                  * (toUnixTimestamp64Milli(assumeNotNull(first_at))
                     - toUnixTimestamp64Milli(assumeNotNull(lagInFrame(latest_at, 1) OVER bucket_before)))) AS b_bridge
        FROM {db}.usage_windows FINAL
        ARRAY JOIN [
            tuple('hour', assumeNotNull(hour_start), assumeNotNull(hour_start) + toIntervalHour(1)),
            tuple('day', assumeNotNull(day_start), assumeNotNull(day_end)),
            tuple('month', assumeNotNull(month_start), assumeNotNull(month_end))
        ] AS rollup
        WHERE granularity = '15m' AND event_count > 0 AND hour_start IS NOT NULL
        WINDOW bucket_before AS (PARTITION BY subscription_id, metric_code, rollup.1, rollup.2 ORDER BY window_start
                                 ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    )
    GROUP BY b_sub, b_metric, r_granularity, r_start, r_end
);

-- Rejected events with the reason and where they came from (the in-process driver and the sink
-- write here; the Kafka usage.dlq topic is the source of truth on the streaming path). A
-- redelivered rejection collapses into its first copy: same source coordinates and field.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    reason           LowCardinality(String),
    detail           String,
    field            String,
    subscription_id  String,
    idempotency_key  String,
    original         String,
    source_topic     String,
    source_partition Int32,
    source_offset    Int64,
    letter_key       String
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset, field, letter_key);
