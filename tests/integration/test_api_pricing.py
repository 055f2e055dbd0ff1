"""PricingService over the wire (``billing serve``'s server on the real PostgreSQL): plans
round-trip exactly, a code created again is a new version only when its prices change, pages walk
every version once, and a bad plan is INVALID_ARGUMENT naming the field as scenario files do."""

from __future__ import annotations

import grpc
import pytest

from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from tests.api_harness import Api, pro_plan, status_of

pytestmark = pytest.mark.integration
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_a_created_plan_reads_back_exactly_by_id_and_by_code(api: Api) -> None:
    created = api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth()).plan
    assert (created.id, created.tenant_id, created.version, created.active) == ("pro@1", "t1", 1, True)
    assert created.base_price == "49"  # the same value, trailing zeros dropped
    tiered, package = created.meters
    assert [(t.up_to, t.unit_price, t.flat_fee) for t in tiered.tiers] == [
        ("10000", "0.002", "0"),
        ("", "0.000123456789", "0"),
    ]
    assert not tiered.tiers[1].HasField("up_to")  # the last tier is unbounded, not bounded at ""
    assert (tiered.included_units, tiered.tier_mode) == ("1000", P.TIER_MODE_GRADUATED)
    assert (package.package_size, package.overage_unit_price, package.unit_price) == ("10", "0.75", "5")
    assert dict(created.metadata) == {"segment": "smb"}
    by_id = api.pricing.GetPlan(P.GetPlanRequest(id="pro@1"), metadata=api.auth()).plan
    by_code = api.pricing.GetPlanByCode(P.GetPlanByCodeRequest(code="pro"), metadata=api.auth()).plan
    assert by_id == by_code == created


def test_creating_a_code_again_is_a_new_version_only_when_its_prices_change(api: Api) -> None:
    first = api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth()).plan
    replay = api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth()).plan
    assert replay == first  # a retried create answers the version it made
    second = api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan(base_price="59.00")), metadata=api.auth()).plan
    assert (second.id, second.version, second.base_price, second.active) == ("pro@2", 2, "59", True)
    old = api.pricing.GetPlanByCode(P.GetPlanByCodeRequest(code="pro", version=1), metadata=api.auth()).plan
    assert (old.base_price, old.active) == ("49", False)  # kept: invoices priced with it stay so
    newest = api.pricing.GetPlanByCode(P.GetPlanByCodeRequest(code="pro"), metadata=api.auth()).plan
    assert newest == second


def test_list_plans_pages_through_every_version_once(api: Api) -> None:
    for code, price in [("a", "1"), ("b", "1"), ("b", "2"), ("c", "1"), ("a", "3")]:
        api.pricing.CreatePlan(
            P.CreatePlanRequest(plan=P.Plan(code=code, currency_code="USD", base_price=price)), metadata=api.auth()
        )
    seen, token = [], ""
    while True:
        page = api.pricing.ListPlans(P.ListPlansRequest(page_size=2, page_token=token), metadata=api.auth())
        assert len(page.plans) <= 2
        seen += [plan.id for plan in page.plans]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["a@1", "a@2", "b@1", "b@2", "c@1"]
    active = api.pricing.ListPlans(P.ListPlansRequest(active_only=True), metadata=api.auth())
    assert [plan.id for plan in active.plans] == ["a@2", "b@2", "c@1"]
    assert active.next_page_token == ""


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (P.Plan(currency_code="USD"), "plan.code: is required"),
        (P.Plan(code="x", currency_code="USD", base_price="abc"), "plan.base_price: not a decimal number: 'abc'"),
        (P.Plan(code="x", currency_code="XXQ"), "plan.currency_code"),
        (
            P.Plan(
                code="x",
                currency_code="USD",
                meters=[P.PlanMeter(metric_code="nope", pricing_model=P.PRICING_MODEL_PER_UNIT)],
            ),
            "plan.meters[0].metric_code: no metric 'nope'",
        ),
        (
            P.Plan(code="x", currency_code="USD", meters=[P.PlanMeter(metric_code="api_calls")]),
            "plan.meters[0].pricing_model: is required",
        ),
        (
            P.Plan(
                code="x",
                currency_code="USD",
                meters=[
                    P.PlanMeter(
                        metric_code="api_calls",
                        pricing_model=P.PRICING_MODEL_TIERED,
                        tiers=[
                            P.Tier(up_to="10", unit_price="1"),
                            P.Tier(up_to="5", unit_price="1"),
                            P.Tier(unit_price="1"),
                        ],
                    )
                ],
            ),
            "plan.meters[0].tiers[1].up_to: tier bounds must increase",
        ),
        (
            P.Plan(
                code="x",
                currency_code="USD",
                meters=[P.PlanMeter(metric_code="api_calls", pricing_model=P.PRICING_MODEL_PACKAGE)],
            ),
            "plan.meters[0].package_size",
        ),
        (P.Plan(code="x", currency_code="USD", base_price="-1"), "plan.base_price"),
        (P.Plan(code="x", currency_code="USD", description="words"), "plan.description"),
    ],
)
def test_a_bad_plan_is_invalid_argument_naming_the_field(api: Api, plan: P.Plan, message: str) -> None:
    code, details = status_of(api.pricing.CreatePlan, P.CreatePlanRequest(plan=plan), metadata=api.auth())
    assert (code, details.startswith(message)) == (INVALID, True), details
    assert api.pricing.ListPlans(P.ListPlansRequest(), metadata=api.auth()).plans == []


def test_bad_lookups_and_pages_name_their_field(api: Api) -> None:
    auth = api.auth()
    assert status_of(api.pricing.GetPlan, P.GetPlanRequest(), metadata=auth) == (INVALID, "id: is required")
    assert status_of(api.pricing.GetPlan, P.GetPlanRequest(id="pro"), metadata=auth)[0] == grpc.StatusCode.NOT_FOUND
    assert (
        status_of(api.pricing.GetPlanByCode, P.GetPlanByCodeRequest(code="pro"), metadata=auth)[0]
        == grpc.StatusCode.NOT_FOUND
    )
    code, details = status_of(api.pricing.ListPlans, P.ListPlansRequest(page_token="garbage"), metadata=auth)
    assert (code, details) == (INVALID, "page_token: not a token this server returned")
    code, details = status_of(api.pricing.ListPlans, P.ListPlansRequest(page_size=-1), metadata=auth)
    assert (code, details.startswith("page_size")) == (INVALID, True)


def test_a_request_above_the_size_bound_is_refused(api: Api) -> None:
    plan = P.Plan(code="big", currency_code="USD", metadata={"blob": "x" * (2 << 20)})
    code, _ = status_of(api.pricing.CreatePlan, P.CreatePlanRequest(plan=plan), metadata=api.auth())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
