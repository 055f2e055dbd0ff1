"""The Grafana dashboards of SmallBiznis Core Billing, as code (issue #15.2), built with
grafana-foundation-sdk and written as JSON under ``ops/grafana/dashboards/``, which Grafana loads
through ``ops/grafana/provisioning/`` in docker-compose.yml.

    python ops/observability/dashboards.py          # regenerate the committed JSON
    python ops/observability/dashboards.py --check  # exit 1 if the committed JSON is stale

Every query names only metrics the roles export (tests/unit/test_observability.py cross-checks
them).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef

OUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
"""The Prometheus datasource as ops/grafana/provisioning/datasources/prometheus.yml names it."""
RATE = "$__rate_interval"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Chart:
    """One panel: a time series unless ``single`` (a stat of the latest value)."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    single: bool = False
    width: int = 12


def quantiles(metric: str, by: str = "") -> tuple[Query, ...]:
    """p50, p95 and p99 of a histogram, over every instance of the role."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return tuple(
        Query(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"p{int(q * 100)}{suffix}")
        for q in (0.5, 0.95, 0.99)
    )


PIPELINE: dict[str, tuple[Chart, ...]] = {
    "Usage pipeline": (
        Chart(
            "Events/s by stage",
            "usage.events messages the worker reads, its events by outcome, and the rows the sink writes "
            "to ClickHouse.",
            "ops",
            (
                Query(f"sum(rate(billing_usage_messages_total[{RATE}]))", "worker: messages read"),
                Query(f"sum by (outcome) (rate(billing_usage_events_total[{RATE}]))", "worker: {{outcome}}"),
                Query(f"sum by (table) (rate(billing_sink_rows_total[{RATE}]))", "sink: {{table}} rows"),
            ),
        ),
        Chart(
            "Consumer lag of usage.events",
            "Messages behind the end of usage.events, per partition (alert: UsageConsumerLagHigh).",
            "short",
            (Query("sum by (partition) (billing_usage_consumer_lag)", "partition {{partition}}"),),
        ),
        Chart(
            "Event → queryable latency",
            "From a window update's Kafka timestamp to its row being queryable in ClickHouse (the sink, "
            "served on the rater's port).",
            "s",
            quantiles("billing_sink_event_to_queryable_seconds"),
        ),
        Chart(
            "Dead letters/s by reason",
            "usage.dlq (the usage worker) and rating.dlq (the invoice worker), by reason; replay them with "
            "`billing dlq` (docs/operations.md).",
            "ops",
            (
                Query(f"sum by (reason) (rate(billing_usage_dead_letters_total[{RATE}]))", "usage.dlq: {{reason}}"),
                Query(f"sum by (reason) (rate(billing_invoicer_dead_letters_total[{RATE}]))", "rating.dlq: {{reason}}"),
            ),
        ),
        Chart(
            "Worker batch time",
            "One batch of usage.events messages in the usage worker.",
            "s",
            quantiles("billing_usage_batch_seconds"),
        ),
        Chart("Sink batch time", "Consume, write to ClickHouse, commit.", "s", quantiles("billing_sink_batch_seconds")),
    ),
    "Outbox relay": (
        Chart(
            "Rows published/s by topic",
            "Outbox rows the relay publishes to invoice.finalized and the catalog topics.",
            "ops",
            (Query(f"sum by (topic) (rate(billing_outbox_published_rows_total[{RATE}]))", "{{topic}}"),),
        ),
        Chart(
            "Batch failures/s by cause",
            "Relay batches aborted and retried (alert: RelayFailing).",
            "ops",
            (Query(f"sum by (cause) (rate(billing_outbox_batch_failures_total[{RATE}]))", "{{cause}}"),),
        ),
        Chart(
            "Active relays",
            "Relays holding the lock: 1 is healthy, 0 means nothing publishes (alert: NoRelayActive).",
            "short",
            (Query("sum(billing_outbox_relay_active)", "active"),),
            single=True,
        ),
        Chart(
            "Since the last relay batch",
            "Seconds since the active relay last committed a batch (idle is fine when nothing changes).",
            "s",
            (Query("time() - max(billing_outbox_last_published_timestamp_seconds)", "age"),),
            single=True,
        ),
    ),
}

BILLING: dict[str, tuple[Chart, ...]] = {
    "Periods": (
        Chart(
            "Periods waiting",
            "Periods due but not handed over yet, and closes put off because the usage pipeline was behind "
            "(alert: PeriodsWaitingTooLong).",
            "short",
            (
                Query("sum(billing_rater_periods_waiting)", "due, waiting"),
                Query(f"sum(increase(billing_rater_pipeline_behind_total[{RATE}]))", "closes put off"),
            ),
        ),
        Chart(
            "Periods handed vs invoiced",
            "Closed periods the rater published to rating.results, and the invoices the invoice worker "
            "finalized from them, per interval: the two lines meet when invoicing keeps up.",
            "short",
            (
                Query(f"sum by (kind) (increase(billing_rater_periods_handed_total[{RATE}]))", "handed: {{kind}}"),
                Query(f"sum(increase(billing_invoicer_invoices_total[{RATE}]))", "invoiced"),
            ),
        ),
        Chart(
            "Open periods",
            "Subscriptions with an open period, and those with a running rating (GetCurrentRating).",
            "short",
            (
                Query("sum(billing_rater_open_periods)", "open periods"),
                Query("sum(billing_rater_running_results)", "running results"),
            ),
        ),
        Chart(
            "Since the rater's last loop turn",
            "Seconds since the rater's loop last completed a turn (alert: RaterStalled).",
            "s",
            (Query("time() - max(billing_rater_last_loop_timestamp_seconds)", "age"),),
            single=True,
            width=12,
        ),
    ),
    "Invoices": (
        Chart(
            "Invoices by currency",
            "Invoices finalized per interval, by currency.",
            "short",
            (Query(f"sum by (currency) (increase(billing_invoicer_invoices_total[{RATE}]))", "{{currency}}"),),
        ),
        Chart(
            "Invoiced amount by currency",
            "Totals of the invoices finalized per interval, in each currency's major unit; the ledger "
            "holds the exact amounts.",
            "short",
            (Query(f"sum by (currency) (increase(billing_invoicer_invoiced_amount_total[{RATE}]))", "{{currency}}"),),
        ),
        Chart(
            "Rating latency",
            "One pass of the rater over the due periods: wait for the pipeline, rate, publish.",
            "s",
            quantiles("billing_rater_close_seconds"),
        ),
        Chart(
            "Invoice worker batch time",
            "Decode, finalize in PostgreSQL, commit, dead-letter, commit offsets.",
            "s",
            quantiles("billing_invoicer_batch_seconds"),
        ),
        Chart(
            "Invoice worker health",
            "Ledger up (1) or down (0), ledger retries and conflicting final ratings per second (alerts: "
            "InvoicerLedgerDown, InvoicerRetrying).",
            "short",
            (
                Query("min(billing_invoicer_ledger_up)", "ledger up"),
                Query(f"sum(rate(billing_invoicer_ledger_retries_total[{RATE}]))", "retries/s"),
                Query(f"sum(rate(billing_invoicer_conflicting_final_ratings_total[{RATE}]))", "conflicts/s"),
            ),
            width=24,
        ),
    ),
}


PAYMENTS: dict[str, tuple[Chart, ...]] = {
    "Charges": (
        Chart(
            "Charge attempts/s by status",
            "Provider answers to charge calls (ChargeInvoice and the payment worker): SUCCEEDED, FAILED, "
            "PROCESSING (a webhook settles it), UNAVAILABLE (no answer; resent with the same key).",
            "ops",
            (
                Query(
                    f"sum by (provider, status) (rate(billing_payment_attempts_total[{RATE}]))",
                    "{{provider}} {{status}}",
                ),
            ),
        ),
        Chart(
            "Failures by reason",
            "Charges declined or failed, by provider and the provider's reason (alert: PaymentFailuresHigh).",
            "short",
            (
                Query(
                    f"sum by (provider, reason) (increase(billing_payment_failures_total[{RATE}]))",
                    "{{provider}} {{reason}}",
                ),
            ),
        ),
    ),
    "Dunning": (
        Chart(
            "Overdue invoices",
            "OVERDUE invoices per tenant, as the payment worker last counted them.",
            "short",
            (Query("sum by (tenant) (billing_invoices_overdue)", "{{tenant}}"),),
        ),
        Chart(
            "Since the payment worker's last pass",
            "Seconds since the payment worker completed a pass (its --interval is 10 s by default).",
            "s",
            (Query("time() - max(billing_payment_worker_last_pass_timestamp_seconds)", "age"),),
            single=True,
        ),
    ),
}


def panel(chart: Chart, panel_id: int) -> stat.Panel | timeseries.Panel:
    """A stat or time-series panel of ``chart``'s queries on the provisioned Prometheus."""
    built = stat.Panel() if chart.single else timeseries.Panel()
    built.id(panel_id).title(chart.title).description(chart.description).unit(chart.unit).datasource(DATASOURCE)
    built.height(8).span(chart.width)
    for n, query in enumerate(chart.queries):
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + n))
        built.with_target(target.datasource(DATASOURCE))
    return built


def build(uid: str, title: str, description: str, rows: dict[str, tuple[Chart, ...]]) -> dict[str, object]:
    """One dashboard as the JSON object Grafana provisions."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["smallbiznis", "billing"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
    )
    ids = iter(range(1, 1000))  # unique panel ids: Grafana links and alerts address panels by id
    for name, charts in rows.items():
        board.with_row(dashboard.Row(name).id(next(ids)))
        for chart in charts:
            board.with_panel(panel(chart, next(ids)))
    encoded: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def dashboards() -> dict[str, dict[str, object]]:
    """File name → dashboard, for every dashboard this repository provisions."""
    return {
        "pipeline.json": build(
            "smallbiznis-pipeline",
            "SmallBiznis · Usage pipeline",
            "Usage events through the worker and the sink into ClickHouse, lag, latency, dead letters, the relay.",
            PIPELINE,
        ),
        "payments.json": build(
            "smallbiznis-payments",
            "SmallBiznis · Payments",
            "Charge attempts by status, failures by reason, overdue invoices and the payment worker's passes.",
            PAYMENTS,
        ),
        "billing.json": build(
            "smallbiznis-billing",
            "SmallBiznis · Billing",
            "Periods due, handed and invoiced; invoices and amounts by currency; rating latency.",
            BILLING,
        ),
    }


def render(board: dict[str, object]) -> str:
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, board in dashboards().items():
        path, text = OUT / name, render(board)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python ops/observability/dashboards.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
