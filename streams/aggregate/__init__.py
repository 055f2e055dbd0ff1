"""Aggregate: the usage worker (Faust) runs the shared operators on ``usage.events`` and keeps
their state in Kafka transactions."""
