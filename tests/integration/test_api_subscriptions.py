"""SubscriptionService over the wire: a create is idempotent on its id, a trial's dates are the
engine's, lists page and filter, a cancel or a plan change is saved through the catalog's path
(its ``catalog.subscriptions`` outbox message in the same transaction). The lifecycle (cancels at
period end or at an instant, scheduled plan changes, statuses on the test clock, the
``subscription.events`` events) is tested in test_api_lifecycle.py."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from invoicing.ledger import tables as t
from schemas.generated.smallbiznis.common.v1.money_pb2 import Money
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import NOW, Api, pro_plan, status_of

pytestmark = pytest.mark.integration
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def at(instant: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


@pytest.fixture
def plans(api: Api) -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan("team", "99")), metadata=api.auth())
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan("rupiah", "100000", "IDR")), metadata=api.auth())


def outbox_keys(api: Api) -> list[str]:
    with api.engine.connect() as connection:
        query = select(t.outbox.c.key).where(t.outbox.c.topic == "catalog.subscriptions").order_by(t.outbox.c.id)
        return list(connection.execute(query).scalars())


def create(api: Api, **fields: object) -> S.Subscription:
    request = S.CreateSubscriptionRequest(**{"plan_code": "pro", **fields})  # type: ignore[arg-type]
    return api.subscriptions.CreateSubscription(request, metadata=api.auth()).subscription


@pytest.mark.usefixtures("plans")
def test_a_create_is_saved_with_its_trial_and_replayed_by_its_id(api: Api) -> None:
    start = datetime(2026, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)
    fields = {
        "id": "sub_1",
        "start_at": at(start),
        "trial_days": 14,
        "trial_balance": Money(units=550, currency_code="USD"),
        "timezone": "Asia/Jakarta",
        "region_code": "ID",
        "coupon_code": "WELCOME10",
        "allow_overage_billing": False,
    }
    created = create(api, **fields)
    assert (created.id, created.tenant_id, created.plan_id, created.status) == (
        "sub_1",
        "t1",
        "pro@1",
        S.SUBSCRIPTION_STATUS_ACTIVE,  # the trial ended on Feb 14, before the clock's Mar 10
    )
    assert created.start_at.ToDatetime(tzinfo=UTC) == start
    assert created.trial_end_at.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 14, 10, 0, 0, 123456, tzinfo=UTC)
    assert (created.allow_overage_billing, created.coupon_code, created.timezone) == (
        False,
        "WELCOME10",
        "Asia/Jakarta",
    )
    assert create(api, **fields) == created  # the same request again: the stored subscription
    assert outbox_keys(api) == ["sub_1"]  # announced once
    code, details = status_of(create, api, **{**fields, "region_code": "SG"})
    assert (code, details) == (grpc.StatusCode.ALREADY_EXISTS, "id: 'sub_1' is taken by another subscription")
    fetched = api.subscriptions.GetSubscription(S.GetSubscriptionRequest(id="sub_1"), metadata=api.auth())
    assert fetched.subscription == created
    with api.ledger.session() as session:
        record = session.get_subscription("sub_1")
    assert record is not None and str(record.subscription.trial_balance) == "5.50"


@pytest.mark.usefixtures("plans")
def test_a_create_without_id_or_start_is_now_and_gets_an_id(api: Api) -> None:
    created = create(api)
    assert created.id.startswith("sub_") and created.start_at.ToDatetime(tzinfo=UTC) == NOW
    assert created.status == S.SUBSCRIPTION_STATUS_ACTIVE and not created.HasField("trial_end_at")


@pytest.mark.usefixtures("plans")
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"plan_code": ""}, "plan_code: is required"),
        ({"plan_code": "gold"}, "plan_code: no plan 'gold'"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"coupon_code": "FREE"}, "coupon_code: no coupon 'FREE'"),
        ({"trial_days": -1}, "trial_days"),
        ({"trial_balance": Money(units=5, currency_code="EUR")}, "trial_balance.currency_code: must be the plan's USD"),
        ({"auto_renew": False}, "auto_renew"),
        ({"metadata": {"a": "b"}}, "metadata: is not stored by this server yet"),
        ({"id": "bad\x00id"}, "id"),
    ],
)
def test_a_bad_create_is_invalid_argument_naming_the_field(api: Api, fields: dict[str, object], message: str) -> None:
    code, details = status_of(create, api, **fields)
    assert (code, details.startswith(message)) == (INVALID, True), details
    assert outbox_keys(api) == []


@pytest.mark.usefixtures("plans")
def test_list_filters_and_pages_by_id(api: Api) -> None:
    for n in range(5):
        create(api, id=f"sub_{n}", plan_code="team" if n % 2 else "pro")
    api.subscriptions.CancelSubscription(S.CancelSubscriptionRequest(id="sub_2"), metadata=api.auth())
    seen, token = [], ""
    while True:
        page = api.subscriptions.ListSubscriptions(
            S.ListSubscriptionsRequest(page_size=2, page_token=token), metadata=api.auth()
        )
        seen += [s.id for s in page.subscriptions]
        if not (token := page.next_page_token):
            break
    assert seen == [f"sub_{n}" for n in range(5)]
    by_plan = api.subscriptions.ListSubscriptions(S.ListSubscriptionsRequest(plan_code="team"), metadata=api.auth())
    assert [s.id for s in by_plan.subscriptions] == ["sub_1", "sub_3"]
    canceled = api.subscriptions.ListSubscriptions(
        S.ListSubscriptionsRequest(status=S.SUBSCRIPTION_STATUS_CANCELED), metadata=api.auth()
    )
    assert [s.id for s in canceled.subscriptions] == ["sub_2"]


@pytest.mark.usefixtures("plans")
def test_a_cancel_now_is_saved_once_and_replayed(api: Api) -> None:
    create(api, id="sub_1")
    request = S.CancelSubscriptionRequest(id="sub_1", reason="too expensive")
    canceled = api.subscriptions.CancelSubscription(request, metadata=api.auth()).subscription
    assert canceled.status == S.SUBSCRIPTION_STATUS_CANCELED
    assert (canceled.cancel_at, canceled.canceled_at, canceled.cancel_reason) == (at(NOW), at(NOW), "too expensive")
    assert api.subscriptions.CancelSubscription(request, metadata=api.auth()).subscription == canceled
    assert outbox_keys(api) == ["sub_1", "sub_1"]  # created, canceled; the second cancel changes nothing
    other = S.CancelSubscriptionRequest(id="sub_1", at_period_end=True, reason="too expensive")
    assert status_of(api.subscriptions.CancelSubscription, other, metadata=api.auth()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "id: subscription 'sub_1' was canceled at 2026-03-10T12:00:00Z",
    )
    create(api, id="sub_2")
    for bad, message in (
        (S.CancelSubscriptionRequest(id="sub_2", reason="x" * 501), "reason: must be at most 500 characters, got 501"),
        (
            S.CancelSubscriptionRequest(id="sub_2", at_period_end=True, effective_at=at(NOW)),
            "effective_at: must be unset when at_period_end is true",
        ),
        (
            S.CancelSubscriptionRequest(id="sub_2", effective_at=at(datetime(2026, 3, 1, tzinfo=UTC))),
            "effective_at: 2026-03-01T00:00:00Z is before now (2026-03-10T12:00:00Z)",
        ),
    ):
        assert status_of(api.subscriptions.CancelSubscription, bad, metadata=api.auth()) == (INVALID, message)
    sub_2 = api.subscriptions.GetSubscription(S.GetSubscriptionRequest(id="sub_2"), metadata=api.auth()).subscription
    assert sub_2.status == S.SUBSCRIPTION_STATUS_ACTIVE and not sub_2.HasField("cancel_at")
    assert outbox_keys(api) == ["sub_1", "sub_1", "sub_2"]


@pytest.mark.usefixtures("plans")
def test_a_plan_change_now_moves_the_subscription_to_the_newest_version(api: Api) -> None:
    create(api, id="sub_1", trial_days=7)
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan("team", "109")), metadata=api.auth())  # team@2
    request = S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="team")
    changed = api.subscriptions.ChangeSubscriptionPlan(request, metadata=api.auth()).subscription
    assert (changed.plan_id, changed.status) == ("team@2", S.SUBSCRIPTION_STATUS_ACTIVE)  # a change ends a trial
    assert outbox_keys(api) == ["sub_1", "sub_1"]
    change = api.subscriptions.ChangeSubscriptionPlan
    assert status_of(
        change, S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="rupiah"), metadata=api.auth()
    ) == (
        INVALID,
        "new_plan_code: plan 'rupiah' bills in IDR, not in USD",
    )
    assert status_of(
        change, S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="gold"), metadata=api.auth()
    ) == (
        INVALID,
        "new_plan_code: no plan 'gold'",
    )
    again = S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="team")
    assert change(again, metadata=api.auth()).subscription == changed  # on it already: a replay
    assert outbox_keys(api) == ["sub_1", "sub_1"]
    api.subscriptions.CancelSubscription(S.CancelSubscriptionRequest(id="sub_1"), metadata=api.auth())
    ended = S.ChangeSubscriptionPlanRequest(id="sub_1", new_plan_code="pro")
    assert status_of(change, ended, metadata=api.auth())[0] == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.usefixtures("plans")
def test_concurrent_changes_of_one_subscription_take_turns(api: Api) -> None:
    """Creates of one id with different content: one wins, the others are ALREADY_EXISTS (never an
    overwrite); a cancel racing a plan change: the cancel is never lost."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(region: str) -> grpc.StatusCode:
        try:
            create(api, id="sub_race", region_code=region)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(attempt, ["ID", "SG", "MY", "TH", "VN", "PH"]))
    assert sorted(codes, key=str) == sorted([grpc.StatusCode.OK] + [grpc.StatusCode.ALREADY_EXISTS] * 5, key=str)
    assert outbox_keys(api) == ["sub_race"]
    for n in range(8):
        create(api, id=f"sub_{n}")
        cancel = S.CancelSubscriptionRequest(id=f"sub_{n}")
        change = S.ChangeSubscriptionPlanRequest(id=f"sub_{n}", new_plan_code="team")
        with ThreadPoolExecutor(2) as pool:
            pool.submit(api.subscriptions.CancelSubscription, cancel, metadata=api.auth())
            changed = pool.submit(_try, api.subscriptions.ChangeSubscriptionPlan, change, api.auth())
        final = api.subscriptions.GetSubscription(S.GetSubscriptionRequest(id=f"sub_{n}"), metadata=api.auth())
        assert final.subscription.status == S.SUBSCRIPTION_STATUS_CANCELED, changed.result()


def _try(call: object, request: object, metadata: list[tuple[str, str]]) -> object:
    try:
        return call(request, metadata=metadata)  # type: ignore[operator]
    except grpc.RpcError as error:
        return error.code()
