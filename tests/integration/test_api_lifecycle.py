"""The subscription lifecycle over the wire, on the server's test clock: statuses move with the
clock (Get and List's status filter agree at every instant), a cancel at period end or at an
instant is scheduled and takes effect there, a plan change at an instant shows the plan in force
until then, one scheduled change waits at a time, replays write nothing, and every change writes
its ``subscription.events`` event in the transaction that writes the subscription."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from invoicing.ledger import tables as t
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import NOW, Api, pro_plan, status_of

pytestmark = pytest.mark.integration
FAILED = grpc.StatusCode.FAILED_PRECONDITION
STATUSES = ("TRIALING", "ACTIVE", "TRIAL_EXPIRED", "CANCELED", "PAST_DUE")
DAY = timedelta(days=1)


def at(instant: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


@pytest.fixture
def plans(api: Api) -> None:
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth())
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan("team", "99")), metadata=api.auth())


def create(api: Api, sub_id: str, **fields: Any) -> S.Subscription:
    request = S.CreateSubscriptionRequest(id=sub_id, plan_code="pro", **{"start_at": at(NOW), **fields})
    return api.subscriptions.CreateSubscription(request, metadata=api.auth()).subscription


def get(api: Api, sub_id: str) -> S.Subscription:
    return api.subscriptions.GetSubscription(S.GetSubscriptionRequest(id=sub_id), metadata=api.auth()).subscription


def cancel(api: Api, sub_id: str, **fields: Any) -> S.Subscription:
    request = S.CancelSubscriptionRequest(id=sub_id, **fields)
    return api.subscriptions.CancelSubscription(request, metadata=api.auth()).subscription


def change(api: Api, sub_id: str, code: str, **fields: Any) -> S.Subscription:
    request = S.ChangeSubscriptionPlanRequest(id=sub_id, new_plan_code=code, **fields)
    return api.subscriptions.ChangeSubscriptionPlan(request, metadata=api.auth()).subscription


def listed(api: Api, **fields: Any) -> list[S.Subscription]:
    request = S.ListSubscriptionsRequest(**fields)
    return list(api.subscriptions.ListSubscriptions(request, metadata=api.auth()).subscriptions)


def statuses(api: Api) -> dict[str, str]:
    """Each subscription's status, from Get; List filtered by each status must say the same."""
    every = {s.id: S.SubscriptionStatus.Name(s.status).removeprefix("SUBSCRIPTION_STATUS_") for s in listed(api)}
    assert every == {
        sub: S.SubscriptionStatus.Name(get(api, sub).status).removeprefix("SUBSCRIPTION_STATUS_") for sub in every
    }
    for name in STATUSES:
        filtered = [s.id for s in listed(api, status=S.SubscriptionStatus.Value(f"SUBSCRIPTION_STATUS_{name}"))]
        assert filtered == sorted(sub for sub, status in every.items() if status == name), name
    return every


def events(api: Api) -> list[dict[str, Any]]:
    """The ``subscription.events`` outbox payloads, in commit order."""
    with api.engine.connect() as connection:
        query = select(t.outbox.c.payload).where(t.outbox.c.topic == "subscription.events").order_by(t.outbox.c.id)
        return [p if isinstance(p, dict) else json.loads(p) for p in connection.execute(query).scalars()]


def revisions(api: Api) -> dict[str, int]:
    with api.engine.connect() as connection:
        rows = connection.execute(select(t.subscriptions.c.id, t.subscriptions.c.revision)).all()
    return {row.id: int(row.revision) for row in rows}


@pytest.mark.usefixtures("plans")
def test_statuses_follow_the_clock_in_get_and_list(api: Api) -> None:
    create(api, "trial", trial_days=7)
    create(api, "trial_no_card", trial_days=7, has_payment_method=False)
    create(api, "plain")
    create(api, "ends")
    cancel(api, "ends", effective_at=at(NOW + 3 * DAY))
    assert statuses(api) == {"trial": "TRIALING", "trial_no_card": "TRIALING", "plain": "ACTIVE", "ends": "ACTIVE"}
    api.clock.advance_to(NOW + 3 * DAY - timedelta(microseconds=1))
    assert statuses(api)["ends"] == "ACTIVE"
    api.clock.advance_to(NOW + 3 * DAY)  # the cancel's instant
    assert statuses(api) == {"trial": "TRIALING", "trial_no_card": "TRIALING", "plain": "ACTIVE", "ends": "CANCELED"}
    api.clock.advance_to(NOW + 7 * DAY)  # the trials' end
    assert statuses(api) == {
        "trial": "ACTIVE",
        "trial_no_card": "TRIAL_EXPIRED",
        "plain": "ACTIVE",
        "ends": "CANCELED",
    }
    ended = (
        S.CancelSubscriptionRequest(id="trial_no_card"),
        S.ChangeSubscriptionPlanRequest(id="trial_no_card", new_plan_code="team"),
    )
    assert status_of(api.subscriptions.CancelSubscription, ended[0], metadata=api.auth()) == (
        FAILED,
        "id: subscription 'trial_no_card' has ended",
    )
    assert status_of(api.subscriptions.ChangeSubscriptionPlan, ended[1], metadata=api.auth())[0] == FAILED


@pytest.mark.usefixtures("plans")
def test_a_cancel_at_period_end_is_scheduled_at_the_end_of_the_period_holding_now(api: Api) -> None:
    create(api, "m", start_at=at(datetime(2026, 3, 1, tzinfo=UTC)))  # monthly: [Mar 1, Apr 1) holds Mar 10
    april = datetime(2026, 4, 1, tzinfo=UTC)
    scheduled = cancel(api, "m", at_period_end=True, reason="moving")
    assert (scheduled.status, scheduled.cancel_at, scheduled.canceled_at) == (
        S.SUBSCRIPTION_STATUS_ACTIVE,
        at(april),
        at(NOW),
    )
    assert (scheduled.cancel_at_period_end, scheduled.cancel_reason) == (True, "moving")
    before = (revisions(api), len(events(api)))
    assert cancel(api, "m", at_period_end=True, reason="moving") == scheduled  # a replay writes nothing
    assert (revisions(api), len(events(api))) == before
    refused = S.ChangeSubscriptionPlanRequest(id="m", new_plan_code="team")
    assert status_of(api.subscriptions.ChangeSubscriptionPlan, refused, metadata=api.auth()) == (
        FAILED,
        "id: subscription 'm' is canceled at 2026-04-01T00:00:00Z",
    )
    api.clock.advance_to(april)
    assert get(api, "m").status == S.SUBSCRIPTION_STATUS_CANCELED
    assert cancel(api, "m", at_period_end=True, reason="moving") == get(api, "m")  # still a replay
    assert status_of(
        api.subscriptions.CancelSubscription, S.CancelSubscriptionRequest(id="m"), metadata=api.auth()
    ) == (FAILED, "id: subscription 'm' was canceled at 2026-04-01T00:00:00Z")


@pytest.mark.usefixtures("plans")
def test_a_trial_canceled_at_period_end_ends_with_its_trial_and_a_scheduled_cancel_can_be_moved(api: Api) -> None:
    start = NOW - 2 * DAY
    create(api, "t", trial_days=14, start_at=at(start))
    assert cancel(api, "t", at_period_end=True).cancel_at == at(start + 14 * DAY)
    assert get(api, "t").status == S.SUBSCRIPTION_STATUS_TRIALING
    moved = cancel(api, "t")  # now instead: a scheduled cancel may be moved
    assert (moved.status, moved.cancel_at, moved.cancel_at_period_end) == (
        S.SUBSCRIPTION_STATUS_CANCELED,
        at(NOW),
        False,
    )
    assert [e["type"] for e in events(api)] == ["SubscriptionCreated", "SubscriptionCanceled", "SubscriptionCanceled"]


@pytest.mark.usefixtures("plans")
def test_a_plan_change_at_an_instant_shows_the_plan_in_force_until_then(api: Api) -> None:
    create(api, "s", trial_days=30, has_payment_method=False)
    instant = NOW + 5 * DAY
    scheduled = change(api, "s", "team", effective_at=at(instant))
    assert (scheduled.plan_id, scheduled.status, scheduled.trial_end_at) == (
        "pro@1",
        S.SUBSCRIPTION_STATUS_TRIALING,
        at(instant),  # the change will cut the trial there
    )
    assert (scheduled.scheduled_plan_code, scheduled.scheduled_plan_version, scheduled.scheduled_change_at) == (
        "team",
        1,
        at(instant),
    )
    assert [s.id for s in listed(api, plan_code="pro")] == ["s"] and listed(api, plan_code="team") == []
    before = (revisions(api), len(events(api)))
    assert change(api, "s", "team", effective_at=at(instant)) == scheduled  # a replay
    assert (revisions(api), len(events(api))) == before
    message = "id: a change to plan 'team' is scheduled at 2026-03-15T12:00:00Z; " + (
        "another change can follow once it took effect"
    )
    other = S.ChangeSubscriptionPlanRequest(id="s", new_plan_code="team", effective_at=at(instant + DAY))
    assert status_of(api.subscriptions.ChangeSubscriptionPlan, other, metadata=api.auth()) == (FAILED, message)
    assert status_of(
        api.subscriptions.CancelSubscription, S.CancelSubscriptionRequest(id="s"), metadata=api.auth()
    ) == (FAILED, message)
    assert (revisions(api), len(events(api))) == before
    api.clock.advance_to(instant)
    now_on = get(api, "s")
    # a change ends the trial: ACTIVE from then on, never TRIAL_EXPIRED, though there is no card
    assert (now_on.plan_id, now_on.status, now_on.scheduled_plan_code) == ("team@1", S.SUBSCRIPTION_STATUS_ACTIVE, "")
    assert [s.id for s in listed(api, plan_code="team")] == ["s"] and listed(api, plan_code="pro") == []
    api.clock.advance_to(NOW + 40 * DAY)
    assert get(api, "s").status == S.SUBSCRIPTION_STATUS_ACTIVE
    assert cancel(api, "s").status == S.SUBSCRIPTION_STATUS_CANCELED


@pytest.mark.usefixtures("plans")
def test_each_change_writes_its_event_with_the_subscription_in_one_transaction(api: Api) -> None:
    create(api, "e", trial_days=3)
    change(api, "e", "team", effective_at=at(NOW + DAY))
    api.clock.advance_to(NOW + DAY)
    cancel(api, "e", at_period_end=True, reason="done")
    # refused requests write nothing
    assert (
        status_of(
            api.subscriptions.ChangeSubscriptionPlan,
            S.ChangeSubscriptionPlanRequest(id="e", new_plan_code="team"),
            metadata=api.auth(),
        )[0]
        == FAILED
    )
    got = events(api)
    assert [(e["type"], e["event_id"], e["revision"]) for e in got] == [
        ("SubscriptionCreated", "e/1", 1),
        ("SubscriptionPlanChanged", "e/2", 2),
        ("SubscriptionCanceled", "e/3", 3),
    ]
    created, changed, canceled = got
    assert {k: created[k] for k in ("subscription_id", "tenant_id", "plan_code", "plan_version", "trial_days")} == {
        "subscription_id": "e",
        "tenant_id": "t1",
        "plan_code": "pro",
        "plan_version": 1,
        "trial_days": 3,
    }
    assert (created["occurred_at"], created["start_at"], created["trial_end_at"]) == (
        "2026-03-10T12:00:00Z",
        "2026-03-10T12:00:00Z",
        "2026-03-13T12:00:00Z",
    )
    assert {k: changed[k] for k in ("previous_plan_code", "previous_plan_version", "plan_code", "plan_version")} == {
        "previous_plan_code": "pro",
        "previous_plan_version": 1,
        "plan_code": "team",
        "plan_version": 1,
    }
    assert (changed["occurred_at"], changed["effective_at"]) == ("2026-03-10T12:00:00Z", "2026-03-11T12:00:00Z")
    # the new plan's periods are anchored at the change: [Mar 11 12:00, Apr 11 12:00)
    assert (canceled["cancel_at"], canceled["at_period_end"], canceled["reason"]) == (
        "2026-04-11T12:00:00Z",
        True,
        "done",
    )
    assert canceled["subscription"]["lifecycle"]["cancel_at"] == "2026-04-11T12:00:00Z"
    # one catalog.subscriptions message per revision, beside its event
    with api.engine.connect() as connection:
        query = select(t.outbox.c.topic, t.outbox.c.payload).order_by(t.outbox.c.id)
        rows = [(topic, p if isinstance(p, dict) else json.loads(p)) for topic, p in connection.execute(query)]
    catalog = [p["revision"] for topic, p in rows if topic == "catalog.subscriptions"]
    assert catalog == [1, 2, 3]
