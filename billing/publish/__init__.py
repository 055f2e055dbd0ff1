"""Publish: the outbox relay, every committed ledger event onto its Kafka topic exactly once."""
