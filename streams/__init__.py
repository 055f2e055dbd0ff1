"""Usage streaming: pure per-record operators, their drivers (in-process, Faust) and the ClickHouse store."""
