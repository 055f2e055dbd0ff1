"""``smallbiznis.subscription.v1.SubscriptionService`` on the ledger's catalog.

A subscription is saved through the same path as ``billing catalog apply`` (``save_subscription``:
the row and its ``catalog.subscriptions`` outbox message in one transaction), validated by the same
reader as scenario files (``parse_subscription``). The rater follows the catalog: a cancel or a
plan change takes effect when it reads the new revision (seconds after the commit), prorated
there; a cancel at period end or at a chosen instant is not expressible in the ledger yet, so those
requests answer UNIMPLEMENTED rather than pretend.

``CreateSubscription`` is idempotent on its ``id``: the same request again answers the stored
subscription; a different one with a taken id is ALREADY_EXISTS. Subscription ids are unique
across tenants (the ledger's key), so an id another tenant took is ALREADY_EXISTS as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import grpc

from billing.api import wire
from billing.api.paging import decode_token, encode_token, page_size
from billing.api.pricing_service import plan_id
from billing.simulate.scenario_file import parse_subscription
from invoicing.engine.subscriptions import Subscription, SubscriptionStatus
from invoicing.ports import ApiLedger, Ledger, LedgerSession, SubscriptionRecord
from rating.errors import BillingError, InvalidValue
from rating.money import minor_to_major
from rating.periods import add_local_days
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2, subscription_pb2_grpc

ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.TRIAL_EXPIRED)


def subscription_message(record: SubscriptionRecord) -> subscription_pb2.Subscription:
    s = record.subscription
    message = subscription_pb2.Subscription(
        id=s.id,
        tenant_id=s.tenant_id,
        plan_code=s.plan_code,
        plan_id=plan_id(s.plan_code, record.plan_version),
        plan_version=record.plan_version,
        status=f"SUBSCRIPTION_STATUS_{record.status.value}",
        auto_renew=True,
        allow_overage_billing=s.allow_overage_billing,
        timezone=s.timezone,
        region_code=s.region_code or "",
        coupon_code=s.coupon_code or "",
        has_payment_method=s.has_payment_method,
        start_at=wire.timestamp(s.start_at),
    )
    if s.trial_days:
        message.trial_start_at.CopyFrom(wire.timestamp(s.start_at))
        message.trial_end_at.CopyFrom(wire.timestamp(add_local_days(s.start_at, s.trial_days, s.timezone)))
    return message


def _not_stored(request: Any, names: tuple[str, ...]) -> None:
    """Refuse fields this server would drop: a setting silently ignored is worse than an error."""
    for name in names:
        if getattr(request, name):
            raise InvalidValue(name, "is not stored by this server yet")


def _flag(request: Any, name: str) -> bool | None:
    return getattr(request, name) if request.HasField(name) else None


class SubscriptionServicer(subscription_pb2_grpc.SubscriptionServiceServicer):
    def __init__(self, ledger: Ledger, api: ApiLedger, now: Callable[[], datetime]) -> None:
        self.ledger = ledger
        self.api = api
        self.now = now

    @staticmethod
    def _owned_in(context: Any, session: LedgerSession, tenant: str, subscription_id: str) -> SubscriptionRecord:
        """The tenant's subscription of that id; NOT_FOUND for any other, as if it did not exist."""
        if not subscription_id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
        record = session.get_subscription(subscription_id)
        if record is None or record.subscription.tenant_id != tenant:
            wire.abort(context, grpc.StatusCode.NOT_FOUND, f"id: no subscription {subscription_id!r}")
        return record

    def _requested(self, request: subscription_pb2.CreateSubscriptionRequest, tenant: str) -> Subscription:
        """The request as the engine's Subscription (its id drawn here when the caller chose none)."""
        if request.HasField("auto_renew") and not request.auto_renew:
            raise InvalidValue("auto_renew", "false is not supported: a subscription renews until canceled")
        _not_stored(request, ("metadata",))
        with self.ledger.session() as session:
            terms = session.get_terms(tenant)
            plan = session.get_plan(tenant, request.plan_code) if request.plan_code else None
        trial_balance = None
        if request.HasField("trial_balance"):
            balance = request.trial_balance
            if plan is not None and balance.currency_code != plan.currency_code:
                raise InvalidValue("trial_balance.currency_code", f"must be the plan's {plan.currency_code}")
            if balance.units < 0:
                raise InvalidValue("trial_balance.units", f"must not be negative, got {balance.units}")
            trial_balance = str(minor_to_major(balance.units, balance.currency_code))
        raw = {
            "id": request.id or f"sub_{uuid.uuid4().hex}",
            "plan_code": request.plan_code or None,
            "start_at": wire.instant(request.start_at, "start_at") if request.HasField("start_at") else self.now(),
            "timezone": request.timezone or None,
            "region_code": request.region_code or None,
            "allow_overage_billing": _flag(request, "allow_overage_billing"),
            "trial_days": request.trial_days or None,
            "trial_balance": trial_balance,
            "has_payment_method": _flag(request, "has_payment_method"),
            "coupon": request.coupon_code or None,
        }
        coupons = set((terms.terms.coupons or {}) if terms is not None else ())
        try:
            return parse_subscription(raw, "", tenant, {} if plan is None else {plan.code: plan}, coupons)
        except BillingError as error:  # the file calls it coupon; the request coupon_code
            raise error if error.field != "coupon" else type(error)("coupon_code", error.message) from None

    def CreateSubscription(
        self, request: subscription_pb2.CreateSubscriptionRequest, context: Any
    ) -> subscription_pb2.CreateSubscriptionResponse:
        tenant = wire.tenant(context, request.tenant_id)
        with wire.errors_as_status(context):
            subscription = self._requested(request, tenant)
            status = SubscriptionStatus.TRIALING if subscription.trial_days else SubscriptionStatus.ACTIVE
            with self.api.subscription_session(subscription.id) as session:
                stored = session.get_subscription(subscription.id)
                if stored is None:
                    stored = session.save_subscription(subscription, status=status)
                else:
                    # a replay without start_at means the instant of the first request
                    same = stored.subscription.tenant_id == tenant and stored.subscription == (
                        subscription
                        if request.HasField("start_at")
                        else replace(subscription, start_at=stored.subscription.start_at)
                    )
                    if not same:
                        wire.abort(
                            context,
                            grpc.StatusCode.ALREADY_EXISTS,
                            f"id: {subscription.id!r} is taken by another subscription",
                        )
        return subscription_pb2.CreateSubscriptionResponse(subscription=subscription_message(stored))

    def GetSubscription(
        self, request: subscription_pb2.GetSubscriptionRequest, context: Any
    ) -> subscription_pb2.GetSubscriptionResponse:
        with self.ledger.session() as session:
            record = self._owned_in(context, session, wire.tenant(context), request.id)
        return subscription_pb2.GetSubscriptionResponse(subscription=subscription_message(record))

    def ListSubscriptions(
        self, request: subscription_pb2.ListSubscriptionsRequest, context: Any
    ) -> subscription_pb2.ListSubscriptionsResponse:
        tenant = wire.tenant(context, request.tenant_id)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (str,))
        status = None
        if request.status:
            status = SubscriptionStatus(
                subscription_pb2.SubscriptionStatus.Name(request.status).removeprefix("SUBSCRIPTION_STATUS_")
            )
        found = self.api.subscriptions(
            tenant, status, request.plan_code or None, None if after is None else str(after[0]), limit + 1
        )
        token = encode_token((found[limit - 1].id,)) if len(found) > limit else ""
        return subscription_pb2.ListSubscriptionsResponse(
            subscriptions=[subscription_message(r) for r in found[:limit]], next_page_token=token
        )

    def CancelSubscription(
        self, request: subscription_pb2.CancelSubscriptionRequest, context: Any
    ) -> subscription_pb2.CancelSubscriptionResponse:
        tenant = wire.tenant(context)
        with self.api.subscription_session(request.id) as session:  # read, decide and save in turn
            record = self._owned_in(context, session, tenant, request.id)
            if request.at_period_end or request.HasField("effective_at"):
                field = "at_period_end" if request.at_period_end else "effective_at"
                wire.abort(
                    context,
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{field}: only a cancel now is built; the ledger's subscription has no effective instant yet",
                )
            with wire.errors_as_status(context):
                _not_stored(request, ("reason",))
            if record.status is SubscriptionStatus.TRIAL_EXPIRED:
                wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"id: subscription {record.id!r} has ended")
            if record.status is not SubscriptionStatus.CANCELED:  # canceling twice answers the first cancel
                record = session.save_subscription(
                    record.subscription, plan_version=record.plan_version, status=SubscriptionStatus.CANCELED
                )
        return subscription_pb2.CancelSubscriptionResponse(subscription=subscription_message(record))

    @staticmethod
    def _changed(session: LedgerSession, tenant: str, record: SubscriptionRecord, code: str) -> SubscriptionRecord:
        """The subscription moved to the newest version of plan ``code`` (same currency); a change
        ends a trial, as the engine's ``change_plan`` does."""
        plan = session.get_plan(tenant, code)
        if plan is None:
            raise InvalidValue("new_plan_code", f"no plan {code!r}")
        current = session.get_plan(tenant, record.subscription.plan_code, record.plan_version)
        if current is not None and plan.currency_code != current.currency_code:
            raise InvalidValue(
                "new_plan_code", f"plan {plan.code!r} bills in {plan.currency_code}, not in {current.currency_code}"
            )
        status = SubscriptionStatus.ACTIVE if record.status is SubscriptionStatus.TRIALING else record.status
        changed = replace(record.subscription, plan_code=plan.code)
        return session.save_subscription(changed, plan_version=plan.version, status=status)

    def ChangeSubscriptionPlan(
        self, request: subscription_pb2.ChangeSubscriptionPlanRequest, context: Any
    ) -> subscription_pb2.ChangeSubscriptionPlanResponse:
        tenant = wire.tenant(context)
        with self.api.subscription_session(request.id) as session:  # read, decide and save in turn
            record = self._owned_in(context, session, tenant, request.id)
            if request.HasField("effective_at"):
                wire.abort(
                    context,
                    grpc.StatusCode.UNIMPLEMENTED,
                    "effective_at: only a change now is built; the ledger's subscription has no effective instant yet",
                )
            if not request.new_plan_code:
                wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "new_plan_code: is required")
            if record.status in ENDED:
                wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"id: subscription {record.id!r} has ended")
            with wire.errors_as_status(context):
                record = self._changed(session, tenant, record, request.new_plan_code)
        return subscription_pb2.ChangeSubscriptionPlanResponse(subscription=subscription_message(record))
