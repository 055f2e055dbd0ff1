"""``billing demo``: a whole billing cycle at scale on the embedded stores.

Seeds a catalog (plans in USD, IDR and EUR; tiered, per-unit, package and gauge meters), a few
thousand subscriptions across timezones, and about a million usage events with duplicates,
conflicts, invalid events and late, out-of-order arrivals; runs them through the same operators
and invoice engine as ``simulate``; prints a summary and where to query the data.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billing.clock import monotonic
from billing.simulate.runner import Simulation
from billing.simulate.scenario import Scenario, ScenarioEvent
from invoicing.engine.discount import Coupon, CouponDuration
from invoicing.engine.model import Invoice
from invoicing.engine.subscriptions import Subscription
from invoicing.engine.tax import TaxRule
from rating.catalog import Aggregation, Metric, MetricType, Plan, PlanMeter, PricingModel, Tier, TierMode
from rating.money import minor_to_major
from streams.inprocess import PipelineStats

START = datetime(2026, 1, 1, tzinfo=UTC)
MONTHS = 2
TIMEZONES = ("UTC", "Asia/Jakarta", "Asia/Singapore", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
REGIONS = {"Asia/Jakarta": "ID", "Asia/Singapore": "SG", "Europe/Berlin": "EU-DE"}


def demo_catalog() -> tuple[tuple[Metric, ...], tuple[Plan, ...]]:
    metrics = (
        Metric("api_calls", MetricType.COUNTER, Aggregation.SUM, "calls"),
        Metric("workflow_runs", MetricType.COUNTER, Aggregation.COUNT, "runs"),
        Metric("active_users", MetricType.COUNTER, Aggregation.UNIQUE_COUNT, "users", field="user_id"),
        Metric("storage_gb", MetricType.GAUGE, Aggregation.TIME_WEIGHTED_SUM, "GB-hours"),
    )
    api_tiers = (Tier(Decimal(100_000), Decimal("0.0004")), Tier(None, Decimal("0.0002")))
    plans = (
        Plan(
            "starter-usd",
            "USD",
            Decimal("19.00"),
            meters=(
                PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("0.0005"), Decimal(1000)),
                PlanMeter("workflow_runs", PricingModel.PACKAGE, Decimal("2.50"), package_size=Decimal(100)),
            ),
            name="Starter",
        ),
        Plan(
            "pro-usd",
            "USD",
            Decimal("49.00"),
            meters=(
                PlanMeter("api_calls", PricingModel.TIERED, included_units=Decimal(10_000), tiers=api_tiers),
                PlanMeter("active_users", PricingModel.PER_UNIT, Decimal("1.20"), Decimal(5)),
                PlanMeter("storage_gb", PricingModel.PER_UNIT, Decimal("0.00014")),
            ),
            name="Pro",
        ),
        Plan(
            "bisnis-idr",
            "IDR",
            Decimal("350000"),
            tax_inclusive=True,
            meters=(
                PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("7.5"), Decimal(5000), Decimal("9.25")),
                PlanMeter(
                    "workflow_runs",
                    PricingModel.TIERED,
                    tier_mode=TierMode.VOLUME,
                    tiers=(Tier(Decimal(500), Decimal(300)), Tier(None, Decimal(200), Decimal(10_000))),
                ),
            ),
            name="Bisnis",
        ),
        Plan(
            "team-eur",
            "EUR",
            Decimal("89.00"),
            meters=(
                PlanMeter("api_calls", PricingModel.PER_UNIT, Decimal("0.0003"), Decimal(50_000)),
                PlanMeter("active_users", PricingModel.PER_UNIT, Decimal("2.00"), Decimal(10)),
            ),
            name="Team",
        ),
    )
    return metrics, plans


def demo_scenario(subscriptions: int, events: int, seed: int) -> Scenario:
    """A reproducible month-scale workload: ~5% duplicates, ~0.2% conflicts, ~0.1% invalid,
    ~10% arriving out of order (some after their period closed)."""
    rng = random.Random(seed)
    metrics, plans = demo_catalog()
    subs = []
    for n in range(subscriptions):
        timezone = TIMEZONES[n % len(TIMEZONES)]
        plan = plans[n % len(plans)]
        start_day = 1 + (n % 3) * 9  # anniversaries on the 1st, 10th and 19th
        subs.append(
            Subscription(
                f"sub_{n:05d}",
                "demo",
                plan.code,
                START.replace(day=start_day),
                timezone=timezone,
                region_code=REGIONS.get(timezone),
                coupon_code="WELCOME10" if n % 10 == 0 else None,
            )
        )
    span_ms = MONTHS * 30 * 86_400_000
    by_plan = {p.code: [m.metric_code for m in p.meters] for p in plans}
    generated: list[ScenarioEvent] = []
    for n in range(events):
        sub = subs[rng.randrange(subscriptions)]
        metric = rng.choice(by_plan[sub.plan_code])
        recorded = sub.start_at + timedelta(milliseconds=rng.randrange(span_ms))
        value: float = {"api_calls": float(rng.randrange(1, 400)), "storage_gb": round(rng.uniform(1, 500), 3)}.get(
            metric, 1.0
        )
        late = rng.random()
        arrives = recorded + timedelta(seconds=rng.randrange(1, 3600)) if late < 0.10 else recorded
        if late < 0.002:
            arrives = recorded + timedelta(days=rng.randrange(3, 20))  # after its period closed: an ADJUSTMENT
        metadata = {"user_id": f"u{rng.randrange(40)}"} if metric == "active_users" else {}
        event = ScenarioEvent(f"e{n}", sub.id, metric, value, recorded, arrives, f"k{n}", metadata, "demo")
        generated.append(event)
        roll = rng.random()
        if roll < 0.05:
            generated.append(event)  # an exact duplicate (a producer retry)
        elif roll < 0.052:
            generated.append(ScenarioEvent(f"c{n}", sub.id, metric, value + 1, recorded, arrives, f"k{n}", {}, "demo"))
        elif roll < 0.053:
            bad = rng.choice([float("nan"), -5.0])
            generated.append(ScenarioEvent(f"b{n}", sub.id, "api_calls", bad, recorded, arrives, f"bad{n}", {}, "demo"))
    return Scenario(
        tenant_id="demo",
        metrics=metrics,
        plans=plans,
        tax_rules=(
            TaxRule("ID", "PPN", Decimal(11), is_default=True),
            TaxRule("SG", "GST", Decimal(9)),
            TaxRule("EU-DE", "VAT", Decimal(19)),
        ),
        coupons=(
            Coupon("WELCOME10", percent_off=Decimal(10), duration=CouponDuration.REPEATING, duration_in_periods=2),
        ),
        subscriptions=tuple(subs),
        events=tuple(generated),
        actions=(),
        run_until=START + timedelta(days=MONTHS * 31 + 20),
    )


def run_demo(data_dir: Path, subscriptions: int, events: int, seed: int) -> None:
    console = Console(width=max(Console().width, 120))  # the summary table needs the room, even in a pipe
    console.print(f"[bold]SmallBiznis billing demo[/bold]: {subscriptions} subscriptions, ~{events:,} usage events")
    started = monotonic()
    scenario = demo_scenario(subscriptions, events, seed)
    console.print(f"generated {len(scenario.events):,} events in {monotonic() - started:.1f}s")
    from billing.database import redact
    from billing.stores import open_stores
    from billing.streaming import tune_gc

    stores = open_stores(data_dir)
    tune_gc()  # a million events: the collector's full passes over the growing state took a third
    invoices: list[Invoice] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        events_task = progress.add_task("usage events", total=len(scenario.events))
        invoices_task = progress.add_task("invoices", total=None)

        def on_event(count: int) -> None:
            progress.update(events_task, completed=count)

        def on_invoice(invoice: Invoice) -> None:
            invoices.append(invoice)
            progress.update(invoices_task, completed=len(invoices))

        simulation = Simulation(
            scenario,
            stores.usage,
            stores.ledger,
            on_invoice=on_invoice,
            on_event=on_event,
            dead_letters=stores.dead_letters,
        )
        result = simulation.run()
    elapsed = monotonic() - started
    summarize(console, invoices, result.stats, elapsed)
    console.print(
        f"\n[bold]Where the data lives[/bold]\n"
        f"  usage (ClickHouse): {stores.clickhouse_where}, database 'billing': tables usage_events, "
        "usage_windows (15-minute buckets), view usage_rollups (hours, days, months), dead_letters\n"
        f"  ledger (PostgreSQL): {redact(stores.database_url)}\n"
        f"[bold]Query it[/bold]\n"
        f"  billing query clickhouse --data-dir {data_dir} "
        "\"SELECT metric_code, sum(total) FROM billing.usage_rollups WHERE granularity = 'month' GROUP BY 1\"\n"
        f"  billing query clickhouse --data-dir {data_dir} "
        '"SELECT reason, count() FROM billing.dead_letters FINAL GROUP BY reason"\n'
        f"  billing query postgres --data-dir {data_dir} "
        '"SELECT status, currency_code, count(*), sum(total) FROM invoices GROUP BY 1, 2"'
    )
    stores.close()


def summarize(console: Console, invoices: list[Invoice], stats: PipelineStats, elapsed: float) -> None:
    table = Table(title=f"{len(invoices):,} invoices finalized in {elapsed:.1f}s")
    for column in ("currency", "invoices", "subtotal", "discounts", "tax", "total", "due", "with adjustments"):
        table.add_column(column, justify="right")
    by_currency: dict[str, Counter[str]] = {}
    for invoice in invoices:
        c = by_currency.setdefault(invoice.currency_code, Counter())
        c["invoices"] += 1
        c["subtotal"] += invoice.subtotal.amount
        c["discounts"] += invoice.discount_total.amount
        c["tax"] += invoice.tax_total.amount
        c["total"] += invoice.total.amount
        c["due"] += invoice.amount_due.amount
        c["adjusted"] += any(line.type == "ADJUSTMENT" for line in invoice.line_items)
    for currency, c in sorted(by_currency.items()):

        def money(key: str, currency: str = currency, c: Counter[str] = c) -> str:
            return f"{minor_to_major(c[key], currency):,}"

        table.add_row(
            currency,
            f"{c['invoices']:,}",
            money("subtotal"),
            money("discounts"),
            money("tax"),
            money("total"),
            money("due"),
            f"{c['adjusted']:,}",
        )
    console.print(table)
    invalid = ", ".join(f"{reason} {count:,}" for reason, count in sorted(stats.invalid.items()))
    console.print(
        f"pipeline: {stats.accepted:,} accepted, {stats.duplicates:,} duplicates dropped, "
        f"{stats.conflicts:,} idempotency conflicts and {sum(stats.invalid.values()):,} invalid events "
        f"dead-lettered ({invalid})"
    )
