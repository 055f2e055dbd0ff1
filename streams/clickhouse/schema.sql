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

-- Absolute totals of one window at a version (its count of distinct events): the newest version
-- wins, so rewriting a window after a replay is harmless. Points (first, latest) are stored as
-- their four parts; ``last`` of WindowTotals is ``latest``. tw_integral is Σ value × Δms, which
-- outgrows Decimal128 (26 integer digits) long before a value does, hence Decimal256.
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
    uniques         Array(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (subscription_id, metric_code, granularity, window_start)
SETTINGS non_replicated_deduplication_window = 1000;

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
