"""A changed and canceled subscription over gRPC, its periods replayed from the ledger's revision
history: a plan change said ahead for an instant mid-period, then a cancel at period end.
``ListBillingPeriods`` / ``GetCurrentBillingPeriod`` serve the cut periods on every clock (the
change only once in force; none after the cancel), and ``GenerateInvoiceForSubscription`` of each
ended period, dry run and stored, bills what ``billing simulate`` bills for the same scenario.
A change that fails leaves its revision unwritten."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from billing.catalog_cli import apply_catalog
from billing.simulate import Simulation, load_scenario
from invoicing.engine.model import Invoice
from invoicing.ledger.memory import MemoryLedger
from schemas.generated.smallbiznis.billing.v1 import billing_pb2 as B
from schemas.generated.smallbiznis.billing.v1 import billing_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from streams.memory import MemoryUsageStore
from tests.api_harness import Api, status_of
from tests.integration.test_api_generate import generate
from tests.integration.test_api_rating import ingest

pytestmark = pytest.mark.integration

SCENARIO = """
tenant_id: t1
metrics: [{code: api_calls, aggregation: SUM}]
plans:
  - {code: m, currency_code: USD, base_price: "10.00",
     meters: [{metric_code: api_calls, pricing_model: PER_UNIT, unit_price: "1", included_units: "2"}]}
  - {code: p, currency_code: USD, base_price: "31.00",
     meters: [{metric_code: api_calls, pricing_model: PER_UNIT, unit_price: "0.5", included_units: "10"}]}
subscriptions: [{id: s, plan_code: m, start_at: "2026-04-01T00:00:00Z"}]
events:
  - {subscription_id: s, metric_code: api_calls, value: 3, recorded_at: "2026-04-05T00:00:00Z", idempotency_key: a}
  - {subscription_id: s, metric_code: api_calls, value: 5, recorded_at: "2026-05-03T00:00:00Z", idempotency_key: b}
  - {subscription_id: s, metric_code: api_calls, value: 20, recorded_at: "2026-05-15T00:00:00Z", idempotency_key: c}
  - {subscription_id: s, metric_code: api_calls, value: 4, recorded_at: "2026-06-05T00:00:00Z", idempotency_key: d}
actions:
  - {at: "2026-05-11T00:00:00Z", type: change_plan, subscription_id: s, plan_code: p}
  - {at: "2026-05-20T00:00:00Z", type: cancel, subscription_id: s, at_period_end: true}
run_until: "2026-07-01T00:00:00Z"
"""
CUT = [  # monthly on m, cut by the change on May 11; monthly on p from there, canceled at its end
    ("2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"),
    ("2026-05-01T00:00:00Z", "2026-05-11T00:00:00Z"),
    ("2026-05-11T00:00:00Z", "2026-06-11T00:00:00Z"),
]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def billing(api: Api) -> Any:
    return billing_pb2_grpc.BillingServiceStub(api.channel)


def listed(api: Api) -> list[tuple[str, str, int, bool]]:
    request = B.ListBillingPeriodsRequest(subscription_id="s", page_size=2)
    out, token = [], None
    while token != "":
        request.page_token = token or ""
        page = billing(api).ListBillingPeriods(request, metadata=api.auth())
        for p in page.billing_periods:
            out.append((p.period_start.ToJsonString(), p.period_end.ToJsonString(), p.status, bool(p.invoice_id)))
        token = page.next_page_token
    return out


def current(api: Api) -> tuple[str, str]:
    request = B.GetCurrentBillingPeriodRequest(subscription_id="s")
    period = billing(api).GetCurrentBillingPeriod(request, metadata=api.auth()).billing_period
    assert period.status == B.BILLING_PERIOD_STATUS_OPEN
    return period.period_start.ToJsonString(), period.period_end.ToJsonString()


def billed(invoice: Any) -> tuple[Any, ...]:
    """What an invoice bills, from the wire: period, plan, lines (type, metric, quantity, amount), totals."""
    lines = [
        (
            I.InvoiceLineItemType.Name(x.type).removeprefix("INVOICE_LINE_ITEM_TYPE_"),
            x.metric_code,
            x.quantity,
            x.amount.units,
        )
        for x in invoice.line_items
    ]
    totals = (invoice.subtotal.units, invoice.tax_total.units, invoice.total.units)
    return (
        invoice.billing_period_start.ToJsonString(),
        invoice.billing_period_end.ToJsonString(),
        invoice.plan_code,
        lines,
        totals,
    )


def simulated(invoice: Invoice) -> tuple[Any, ...]:
    lines = [
        (x.type.value, x.metric_code or "", "" if x.quantity is None else str(x.quantity), x.amount.amount)
        for x in invoice.line_items
    ]
    totals = (invoice.subtotal.amount, invoice.tax_total.amount, invoice.total.amount)
    period = (invoice.period.start, invoice.period.end)
    return (*(p.strftime("%Y-%m-%dT%H:%M:%SZ") for p in period), invoice.plan_code, lines, totals)


def test_a_plan_change_and_a_cancel_at_period_end_are_served_and_billed_as_simulate(
    api_usage: Api, tmp_path: Path
) -> None:
    api = api_usage
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    assert [(i.period.start, i.period.end) for i in expected] == [(_at(a), _at(b)) for a, b in CUT]
    apply_catalog(api.ledger, scenario)
    ingest(
        api,
        [
            (e.subscription_id, e.metric_code, e.value, e.recorded_at.strftime("%Y-%m-%dT%H:%M:%S"))
            for e in scenario.events
        ],
    )
    OPEN, CLOSED, INVOICED = (
        B.BILLING_PERIOD_STATUS_OPEN,
        B.BILLING_PERIOD_STATUS_CLOSED,
        B.BILLING_PERIOD_STATUS_INVOICED,
    )

    api.clock.advance_to(_at("2026-05-05T00:00:00Z"))  # the change said ahead
    change = S.ChangeSubscriptionPlanRequest(id="s", new_plan_code="p")
    change.effective_at.FromJsonString("2026-05-11T00:00:00Z")
    api.subscriptions.ChangeSubscriptionPlan(change, metadata=api.auth())
    api.clock.advance_to(_at("2026-05-08T00:00:00Z"))  # not in force yet: May is whole
    assert current(api) == ("2026-05-01T00:00:00Z", "2026-06-01T00:00:00Z")
    api.clock.advance_to(_at("2026-05-15T00:00:00Z"))
    assert current(api) == CUT[2]
    assert listed(api) == [(*CUT[0], CLOSED, False), (*CUT[1], CLOSED, False), (*CUT[2], OPEN, False)]

    api.clock.advance_to(_at("2026-05-20T00:00:00Z"))
    cancel = S.CancelSubscriptionRequest(id="s", at_period_end=True)
    assert (
        api.subscriptions.CancelSubscription(cancel, metadata=api.auth()).subscription.cancel_at.ToJsonString()
        == CUT[2][1]
    )
    assert current(api) == CUT[2]

    api.clock.advance_to(scenario.run_until)
    assert listed(api) == [(*period, CLOSED, False) for period in CUT]
    code, details = status_of(
        billing(api).GetCurrentBillingPeriod, B.GetCurrentBillingPeriodRequest(subscription_id="s"), metadata=api.auth()
    )
    assert (code, details.split(":")[0]) == (grpc.StatusCode.FAILED_PRECONDITION, "subscription_id")

    call = api.invoices.GenerateInvoiceForSubscription
    drafts = [call(generate("s", period), metadata=api.auth()).invoice for period in CUT]
    assert [billed(d) for d in drafts] == [simulated(i) for i in expected]
    assert all(d.status == I.INVOICE_STATUS_DRAFT for d in drafts)
    stored = [call(generate("s", period, dry_run=False), metadata=api.auth()).invoice for period in CUT]
    assert [billed(s) for s in stored] == [simulated(i) for i in expected]
    assert [s.invoice_number for s in stored] == [f"INV-2026-00000{n}" for n in (1, 2, 3)]
    assert listed(api) == [(*period, INVOICED, True) for period in CUT]
    # the latest ended period is the last one, cut by the cancel; nothing ends after it
    assert billed(call(generate("s"), metadata=api.auth()).invoice) == billed(stored[2])
    outside = generate("s", ("2026-06-11T00:00:00Z", "2026-07-11T00:00:00Z"))
    assert status_of(call, outside, metadata=api.auth())[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_a_failed_change_leaves_no_revision(api_usage: Api, tmp_path: Path) -> None:
    api = api_usage
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    apply_catalog(api.ledger, load_scenario(path))

    def revisions() -> list[tuple[int, str]]:
        with api.engine.connect() as connection:
            query = text("SELECT revision, plan_code FROM subscription_revisions WHERE id = 's' ORDER BY revision")
            return [(int(r), code) for r, code in connection.execute(query).all()]

    assert revisions() == [(1, "m")]
    # the outbox refuses the change's event: the change, its revision and its messages roll back together
    with api.engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'outbox down'; END $$ "
                "LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    change = S.ChangeSubscriptionPlanRequest(id="s", new_plan_code="p")
    assert status_of(api.subscriptions.ChangeSubscriptionPlan, change, metadata=api.auth())[0] != grpc.StatusCode.OK
    assert revisions() == [(1, "m")]
    with api.ledger.session() as session:
        record = session.get_subscription("s")
    assert record is not None and (record.revision, record.subscription.plan_code) == (1, "m")
    with api.engine.begin() as connection:
        connection.execute(text("DROP TRIGGER refuse ON outbox"))
    api.subscriptions.ChangeSubscriptionPlan(change, metadata=api.auth())
    assert revisions() == [(1, "m"), (2, "p")]
