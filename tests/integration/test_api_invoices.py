"""InvoiceService over the wire: invoices finalized by the real path (InvoiceService.close_period
on the PostgreSQL ledger) read back exactly, in minor units and decimal strings; lists filter by
subscription and status and page by id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import grpc
import pytest

from invoicing.engine.subscriptions import close_due, open_cycle
from invoicing.ports import UsageRequest
from invoicing.service import InvoiceService
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import Api, pro_plan, status_of, terms

pytestmark = pytest.mark.integration
USAGE = {"api_calls": Decimal("12345.5"), "storage_gb": Decimal("25")}


class FixedUsage:
    """A UsageReader with the same quantities for every period."""

    def quantities(self, requests: Sequence[UsageRequest]) -> list[Decimal]:
        return [USAGE[request.metric_code] for request in requests]


def invoice_periods(api: Api, subscription_id: str, periods: int, tenant: str = "t1") -> None:
    """Finalize the subscription's first ``periods`` periods through the ledger, as the invoicer does."""
    with api.ledger.session() as session:
        record = session.get_subscription(subscription_id)
        assert record is not None
        plan = session.get_plan(tenant, record.subscription.plan_code, record.plan_version)
    assert plan is not None
    service = InvoiceService(api.ledger, FixedUsage(), terms(tenant))
    cycle = open_cycle(record.subscription, plan)
    for _ in range(periods):
        closed, cycle = close_due(cycle)
        service.close_period(closed, closed.period.end + timedelta(hours=1))


@pytest.fixture
def invoiced(api: Api) -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    for sub in ("sub_a", "sub_b"):
        request = S.CreateSubscriptionRequest(id=sub, plan_code="pro", region_code="ID", coupon_code="WELCOME10")
        request.start_at.FromJsonString("2026-01-01T00:00:00Z")
        api.subscriptions.CreateSubscription(request, metadata=api.auth())
    invoice_periods(api, "sub_a", 2)
    invoice_periods(api, "sub_b", 1)


@pytest.mark.usefixtures("invoiced")
def test_an_invoice_reads_back_in_minor_units_and_decimal_strings(api: Api) -> None:
    listed = api.invoices.ListInvoices(I.ListInvoicesRequest(subscription_id="sub_a"), metadata=api.auth()).invoices
    first = api.invoices.GetInvoice(I.GetInvoiceRequest(id=listed[0].id), metadata=api.auth()).invoice
    assert first == listed[0]
    assert (first.invoice_number, first.status, first.currency_code) == (
        "INV-2026-000001",
        I.INVOICE_STATUS_PENDING,
        "USD",
    )
    assert (first.plan_code, first.plan_version, first.subscription_id) == ("pro", 1, "sub_a")
    assert first.billing_period_start.ToJsonString() == "2026-01-01T00:00:00Z"
    assert first.billing_period_end.ToJsonString() == "2026-02-01T00:00:00Z"
    # issued an hour after the period (invoice_periods); due the tenant's default 14 net days later
    assert (first.issued_at.ToJsonString(), first.due_at.ToJsonString()) == (
        "2026-02-01T01:00:00Z",
        "2026-02-15T01:00:00Z",
    )
    assert not first.HasField("paid_at")
    lines = [(line.type, line.quantity, line.unit_price, line.amount.units) for line in first.line_items]
    # billable api_calls 11345.5: 10000 × 0.002 + 1345.5 × 0.000123456789 = 20.1661 → 2017;
    # storage ceil(25 / 10) × 5 = 1500; subtotal 8417; WELCOME10 once: -842; PPN 11% of 7575 = 833.25 → 833
    assert lines == [
        (I.INVOICE_LINE_ITEM_TYPE_RECURRING, "1", "49", 4900),
        (I.INVOICE_LINE_ITEM_TYPE_USAGE, "12345.5", "", 2017),
        (I.INVOICE_LINE_ITEM_TYPE_USAGE, "25", "5", 1500),
        (I.INVOICE_LINE_ITEM_TYPE_DISCOUNT, "", "", -842),
        (I.INVOICE_LINE_ITEM_TYPE_TAX, "", "11", 833),
    ]
    assert not first.line_items[3].HasField("quantity") and not first.line_items[1].HasField("unit_price")
    totals = (first.subtotal, first.discount_total, first.tax_total, first.total, first.amount_due)
    assert [money.units for money in totals] == [8417, 842, 833, 8408, 8408]
    second = api.invoices.ListInvoices(I.ListInvoicesRequest(subscription_id="sub_a"), metadata=api.auth()).invoices[1]
    assert (second.discount_total.units, second.invoice_number) == (0, "INV-2026-000002")  # the coupon was once
    assert {line.amount.currency_code for line in first.line_items} == {"USD"}


@pytest.mark.usefixtures("invoiced")
def test_list_filters_by_subscription_and_status_and_pages_by_id(api: Api) -> None:
    seen, token = [], ""
    while True:
        page = api.invoices.ListInvoices(I.ListInvoicesRequest(page_size=2, page_token=token), metadata=api.auth())
        seen += [(i.subscription_id, i.invoice_number) for i in page.invoices]
        if not (token := page.next_page_token):
            break
    assert seen == [("sub_a", "INV-2026-000001"), ("sub_a", "INV-2026-000002"), ("sub_b", "INV-2026-000003")]
    only_b = api.invoices.ListInvoices(I.ListInvoicesRequest(subscription_id="sub_b"), metadata=api.auth())
    assert [i.invoice_number for i in only_b.invoices] == ["INV-2026-000003"]
    paid = api.invoices.ListInvoices(I.ListInvoicesRequest(status=I.INVOICE_STATUS_PAID), metadata=api.auth())
    assert paid.invoices == []
    pending = api.invoices.ListInvoices(I.ListInvoicesRequest(status=I.INVOICE_STATUS_PENDING), metadata=api.auth())
    assert len(pending.invoices) == 3


@pytest.mark.usefixtures("invoiced")
def test_bad_invoice_ids_and_tokens(api: Api) -> None:
    get = api.invoices.GetInvoice
    assert status_of(get, I.GetInvoiceRequest(), metadata=api.auth()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "id: is required",
    )
    for missing in ("999999", "abc", "9" * 30, "-1"):
        assert status_of(get, I.GetInvoiceRequest(id=missing), metadata=api.auth())[0] == grpc.StatusCode.NOT_FOUND
    code, details = status_of(
        api.invoices.ListInvoices, I.ListInvoicesRequest(page_token="eyJ4Ijox"), metadata=api.auth()
    )
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token: not a token this server returned")
