"""Prometheus metrics of the usage worker and the sink, each on its own registry so that several
run in one process (tests) without clashing; ``serve`` exposes one on an HTTP port."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from rating.errors import InvalidValue
from streams.operators.records import Reason

OUTCOMES = ("accepted", "duplicate", "conflict", "invalid", "replay", "late")


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "billing_usage_events",
            "Usage events by outcome: accepted, duplicate, conflict, invalid, replay (redelivered after a crash), "
            "late (event time more than one bucket behind the partition's newest)",
            ["outcome"],
            registry=self.registry,
        )
        self.messages = Counter("billing_usage_messages", "Kafka messages processed", registry=self.registry)
        self.batch_seconds = Histogram(
            "billing_usage_batch_seconds", "Time to process one batch of messages", registry=self.registry
        )
        self.lag = Gauge(
            "billing_usage_consumer_lag",
            "Messages behind the end of usage.events",
            ["partition"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "billing_usage_dead_letters",
            "Dead letters written to usage.dlq, by reason (counted when written: a batch redone after a "
            "crash counts its letters again)",
            ["reason"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.events.labels(outcome=outcome)
        for reason in Reason:  # every reason at 0, so rate() and increase() see the first letter
            self.dead_letters.labels(reason=reason.value)

    def observe_batch(self, counts: Mapping[str, int], messages: int, seconds: float) -> None:
        for outcome, count in counts.items():
            self.events.labels(outcome=outcome).inc(count)
        self.messages.inc(messages)
        self.batch_seconds.observe(seconds)


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """On ``registry`` when given: a role that embeds the sink (the rater) serves both on one port."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.rows = Counter("billing_sink_rows", "Rows written to ClickHouse", ["table"], registry=self.registry)
        self.batch_seconds = Histogram(
            "billing_sink_batch_seconds",
            "Latency of one sink batch: consume, write to ClickHouse, commit",
            registry=self.registry,
        )
        self.event_to_queryable = Histogram(
            "billing_sink_event_to_queryable_seconds",
            "From a window update's Kafka timestamp to its row being queryable in ClickHouse",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )


LOOPBACK = "127.0.0.1"


def add_metrics_arguments(parser: Any) -> None:
    """``--metrics-port`` and ``--metrics-host`` of a role (loopback unless told otherwise)."""
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    parser.add_argument(
        "--metrics-host", default=LOOPBACK, help="address the metrics port binds (default 127.0.0.1; 0.0.0.0: all)"
    )


def serve(registry: CollectorRegistry, port: int, host: str = LOOPBACK) -> None:
    """Expose ``registry`` at ``http://host:port/metrics`` from a daemon thread: loopback unless
    told otherwise, since metrics name tenants and volumes (issue #15.3)."""
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        reason = error.strerror or str(error)
        raise InvalidValue("--metrics-port", f"cannot serve metrics on {host}:{port}: {reason}") from None
