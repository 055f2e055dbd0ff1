"""BillingService reads over the wire: the billing periods of the subscription's calendar, the
finalized ones INVOICED with their invoice id, the current one OPEN; the prepaid credit balance;
errors name the field; another tenant's subscription is NOT_FOUND (the trial's RPCs:
test_api_trial.py)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from schemas.generated.smallbiznis.billing.v1 import billing_pb2 as B
from schemas.generated.smallbiznis.billing.v1 import billing_pb2_grpc
from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.credit.v1 import credit_pb2 as C
from schemas.generated.smallbiznis.credit.v1 import credit_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import Api, pro_plan, status_of
from tests.integration.test_api_invoices import invoice_periods

pytestmark = pytest.mark.integration


def billing(api: Api) -> Any:
    return billing_pb2_grpc.BillingServiceStub(api.channel)  # type: ignore[no-untyped-call]


def subscribe(api: Api, sub: str, start: str = "2026-01-01T00:00:00Z", tenant: str = "t1", **fields: Any) -> None:
    request = S.CreateSubscriptionRequest(id=sub, plan_code="pro", **fields)
    request.start_at.FromJsonString(start)
    api.subscriptions.CreateSubscription(request, metadata=api.auth(tenant))


@pytest.fixture
def subscribed(api: Api) -> Api:
    for tenant in ("t1", "t2"):
        api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth(tenant))
    subscribe(api, "sub_1")
    return api


def spans(periods: Any) -> list[tuple[str, str, int]]:
    return [(p.period_start.ToJsonString(), p.period_end.ToJsonString(), p.status) for p in periods]


def test_periods_follow_the_calendar_and_the_ledger(subscribed: Api) -> None:
    api = subscribed
    invoice_periods(api, "sub_1", 1)
    (invoice,) = api.invoices.ListInvoices(I.ListInvoicesRequest(), metadata=api.auth()).invoices
    first = billing(api).ListBillingPeriods(
        B.ListBillingPeriodsRequest(subscription_id="sub_1", page_size=2), metadata=api.auth()
    )
    rest = billing(api).ListBillingPeriods(
        B.ListBillingPeriodsRequest(subscription_id="sub_1", page_size=2, page_token=first.next_page_token),
        metadata=api.auth(),
    )
    assert rest.next_page_token == ""
    periods = [*first.billing_periods, *rest.billing_periods]
    assert spans(periods) == [
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", B.BILLING_PERIOD_STATUS_INVOICED),
        ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", B.BILLING_PERIOD_STATUS_CLOSED),
        ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", B.BILLING_PERIOD_STATUS_OPEN),  # NOW is 10 March
    ]
    assert [p.invoice_id for p in periods] == [invoice.id, "", ""]
    current = billing(api).GetCurrentBillingPeriod(
        B.GetCurrentBillingPeriodRequest(subscription_id="sub_1"), metadata=api.auth()
    )
    assert current.billing_period == periods[2]
    assert current.billing_period.id == "sub_1@2026-03-01T00:00:00Z"
    subscribe(api, "sub_trial", trial_days=14)
    trial = billing(api).ListBillingPeriods(
        B.ListBillingPeriodsRequest(subscription_id="sub_trial"), metadata=api.auth()
    )
    assert spans(trial.billing_periods)[:2] == [
        ("2026-01-01T00:00:00Z", "2026-01-15T00:00:00Z", B.BILLING_PERIOD_STATUS_CLOSED),  # the trial
        ("2026-01-15T00:00:00Z", "2026-02-15T00:00:00Z", B.BILLING_PERIOD_STATUS_CLOSED),
    ]


def test_balance_is_the_prepaid_credit(subscribed: Api) -> None:
    api = subscribed
    request = B.GetBalanceRequest(subscription_id="sub_1")
    assert billing(api).GetBalance(request, metadata=api.auth()).balance.credit_balance == Money(
        units=0, currency_code="USD"
    )
    note = C.CreateCreditNoteRequest(
        subscription_id="sub_1", type=C.CREDIT_NOTE_TYPE_BALANCE, amount=Money(units=1500, currency_code="USD")
    )
    credit_pb2_grpc.CreditServiceStub(api.channel).CreateCreditNote(note, metadata=api.auth())  # type: ignore[no-untyped-call]
    balance = billing(api).GetBalance(request, metadata=api.auth()).balance
    assert (balance.subscription_id, balance.credit_balance) == ("sub_1", Money(units=1500, currency_code="USD"))


def test_billing_errors(subscribed: Api) -> None:
    api = subscribed
    for call, request in billing_calls(api):
        code, details = status_of(call, request, metadata=api.auth("t2"))
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, "subscription_id: no subscription 'sub_1'"), call
        code, details = status_of(call, type(request)(), metadata=api.auth())
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "subscription_id"), call
    bad_token = B.ListBillingPeriodsRequest(subscription_id="sub_1", page_token="nope")
    assert status_of(billing(api).ListBillingPeriods, bad_token, metadata=api.auth())[1].startswith("page_token")
    subscribe(api, "sub_later", start="2027-01-01T00:00:00Z")
    later = B.GetCurrentBillingPeriodRequest(subscription_id="sub_later")
    assert (
        status_of(billing(api).GetCurrentBillingPeriod, later, metadata=api.auth())[0]
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    api.subscriptions.CancelSubscription(S.CancelSubscriptionRequest(id="sub_1"), metadata=api.auth())
    # canceled now: its periods end at the cancel, and none holds now
    listed = billing(api).ListBillingPeriods(B.ListBillingPeriodsRequest(subscription_id="sub_1"), metadata=api.auth())
    closed = B.BILLING_PERIOD_STATUS_CLOSED
    assert spans(listed.billing_periods)[-2:] == [
        ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", closed),
        ("2026-03-01T00:00:00Z", "2026-03-10T12:00:00Z", closed),
    ]
    current = B.GetCurrentBillingPeriodRequest(subscription_id="sub_1")
    code, details = status_of(billing(api).GetCurrentBillingPeriod, current, metadata=api.auth())
    assert (code, details.split(":")[0]) == (grpc.StatusCode.FAILED_PRECONDITION, "subscription_id")
    # without a trial: its status says so, and needs no usage store
    status = billing(api).GetTrialStatus(B.GetTrialStatusRequest(subscription_id="sub_1"), metadata=api.auth())
    assert (status.trial_status.enabled, status.trial_status.HasField("trial_balance")) == (False, False)


def billing_calls(api: Api) -> list[tuple[Any, Any]]:
    """One valid request of t1's to every served BillingService RPC."""
    return [
        (billing(api).GetCurrentBillingPeriod, B.GetCurrentBillingPeriodRequest(subscription_id="sub_1")),
        (billing(api).ListBillingPeriods, B.ListBillingPeriodsRequest(subscription_id="sub_1")),
        (billing(api).GetBalance, B.GetBalanceRequest(subscription_id="sub_1")),
        (billing(api).GetTrialStatus, B.GetTrialStatusRequest(subscription_id="sub_1")),
        (billing(api).OnSubscriptionCreated, B.OnSubscriptionCreatedRequest(subscription_id="sub_1")),
        (
            billing(api).RecordUsage,
            B.RecordUsageRequest(subscription_id="sub_1", metric_code="api_calls", quantity="1", idempotency_key="k"),
        ),
    ]
