"""Prometheus metrics of the rater: what it has handed to the invoice worker, what waits, and
whether its loop still turns (a stalled rater means invoices silently stop)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RaterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.handed = Counter(
            "billing_rater_periods_handed",
            "Closed periods rated and published to rating.results, by tenant and kind (period, adjustment)",
            ["tenant", "kind"],
            registry=self.registry,
        )
        self.waiting = Gauge(
            "billing_rater_periods_waiting",
            "Periods due but not handed over yet (the usage pipeline is behind, or the tenant's terms are missing)",
            registry=self.registry,
        )
        self.behind = Counter(
            "billing_rater_pipeline_behind",
            "Closes put off because the usage pipeline had not caught up within the wait",
            registry=self.registry,
        )
        self.close_seconds = Histogram(
            "billing_rater_close_seconds",
            "One pass over the due periods: wait for the pipeline, rate, publish",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.open_periods = Gauge(
            "billing_rater_open_periods", "Subscriptions with an open billing period", registry=self.registry
        )
        self.running_results = Gauge(
            "billing_rater_running_results",
            "Open periods with a running rating served by GetCurrentRating",
            registry=self.registry,
        )
        self.last_loop = Gauge(
            "billing_rater_last_loop_timestamp_seconds",
            "When the rater's loop last completed a turn (Unix time); an old value is a stalled rater",
            registry=self.registry,
        )
