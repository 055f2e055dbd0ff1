"""``smallbiznis.subscription.v1.SubscriptionService`` on the ledger's catalog.

A subscription is saved through the same path as ``billing catalog apply`` (``save_subscription``:
the row and its ``catalog.subscriptions`` outbox message in one transaction), validated by the same
reader as scenario files (``parse_subscription``). Every revision written here also carries its
lifecycle (``invoicing.engine.subscriptions.Lifecycle``): the instant it takes effect, which the
rater applies it at (a later one waits in the rater until its clock gets there), so the served path
cuts periods where ``billing simulate``'s ``cancel`` and ``change_plan`` actions do. The same
transaction writes the ``subscription.events`` event (``SubscriptionCreated``,
``SubscriptionCanceled``, ``SubscriptionPlanChanged``). Statuses are computed on read from the
clock (``SubscriptionRecord.status_at``), so TRIALING, ACTIVE, TRIAL_EXPIRED and CANCELED are true
whenever they are read (decision 0009).

``CreateSubscription`` is idempotent on its ``id``: the same request again answers the stored
subscription; a different one with a taken id is ALREADY_EXISTS. Subscription ids are unique
across tenants (the ledger's key), so an id another tenant took is ALREADY_EXISTS as well.
A cancel or plan change asked again (the same instant, or "now" once it took effect) answers the
stored subscription and writes nothing; one scheduled change waits at a time (docs/api.md).
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
from invoicing.engine.render import rfc3339_exact
from invoicing.engine.subscriptions import Subscription, SubscriptionStatus, cycle_at, trial_end
from invoicing.ledger.subscription_events import SubscriptionEvent, subscription_event
from invoicing.ports import ApiLedger, Ledger, LedgerSession, SubscriptionRecord
from rating.catalog import Plan
from rating.errors import BillingError, InvalidValue
from rating.money import minor_to_major
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2, subscription_pb2_grpc

ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.TRIAL_EXPIRED)


MAX_REASON = 500
FAILED = grpc.StatusCode.FAILED_PRECONDITION


def subscription_message(record: SubscriptionRecord, now: datetime) -> subscription_pb2.Subscription:
    """The subscription as it stands at ``now``: its status then, the plan in force then (a
    scheduled plan change is shown apart), and its cancel's instants."""
    s, life = record.subscription, record.lifecycle
    code, version = record.plan_at(now)
    message = subscription_pb2.Subscription(
        id=s.id,
        tenant_id=s.tenant_id,
        plan_code=code,
        plan_id=plan_id(code, version),
        plan_version=version,
        status=f"SUBSCRIPTION_STATUS_{record.status_at(now).value}",
        cancel_at_period_end=life.cancel_at_period_end,
        cancel_reason=life.cancel_reason or "",
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
        message.trial_end_at.CopyFrom(wire.timestamp(life.trial_end_at or trial_end(s) or s.start_at))
    if life.cancel_at is not None:
        message.cancel_at.CopyFrom(wire.timestamp(life.cancel_at))
    if life.canceled_at is not None:
        message.canceled_at.CopyFrom(wire.timestamp(life.canceled_at))
    if (code, version) != (s.plan_code, record.plan_version) and life.effective_at is not None:
        message.scheduled_plan_code = s.plan_code
        message.scheduled_plan_version = record.plan_version
        message.scheduled_change_at.CopyFrom(wire.timestamp(life.effective_at))
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
        now = self.now()
        with wire.errors_as_status(context):
            subscription = self._requested(request, tenant)
            status = SubscriptionStatus.TRIALING if subscription.trial_days else SubscriptionStatus.ACTIVE
            with self.api.subscription_session(subscription.id) as session:
                stored = session.get_subscription(subscription.id)
                if stored is None:
                    stored = session.save_subscription(subscription, status=status, recorded_at=now)
                    session.add_outbox(subscription_event(SubscriptionEvent.CREATED, stored, now))
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
        return subscription_pb2.CreateSubscriptionResponse(subscription=subscription_message(stored, now))

    def GetSubscription(
        self, request: subscription_pb2.GetSubscriptionRequest, context: Any
    ) -> subscription_pb2.GetSubscriptionResponse:
        with self.ledger.session() as session:
            record = self._owned_in(context, session, wire.tenant(context), request.id)
        return subscription_pb2.GetSubscriptionResponse(subscription=subscription_message(record, self.now()))

    def ListSubscriptions(
        self, request: subscription_pb2.ListSubscriptionsRequest, context: Any
    ) -> subscription_pb2.ListSubscriptionsResponse:
        """The tenant's subscriptions by id; ``status`` and ``plan_code`` filter on what holds now."""
        tenant = wire.tenant(context, request.tenant_id)
        now = self.now()
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (str,))
        status = None
        if request.status:
            status = SubscriptionStatus(
                subscription_pb2.SubscriptionStatus.Name(request.status).removeprefix("SUBSCRIPTION_STATUS_")
            )
        found = self.api.subscriptions(
            tenant, status, request.plan_code or None, None if after is None else str(after[0]), limit + 1, now
        )
        token = encode_token((found[limit - 1].id,)) if len(found) > limit else ""
        return subscription_pb2.ListSubscriptionsResponse(
            subscriptions=[subscription_message(r, now) for r in found[:limit]], next_page_token=token
        )

    @staticmethod
    def _instant(request: Any, now: datetime) -> datetime | None:
        """The request's ``effective_at`` (None when unset), refused before ``now``."""
        if not request.HasField("effective_at"):
            return None
        at = wire.instant(request.effective_at, "effective_at")
        if at < now:
            raise InvalidValue("effective_at", f"{rfc3339_exact(at)} is before now ({rfc3339_exact(now)})")
        return at

    @staticmethod
    def _current_plan(context: Any, session: LedgerSession, record: SubscriptionRecord) -> Plan:
        sub = record.subscription
        plan = session.get_plan(sub.tenant_id, sub.plan_code, record.plan_version)
        if plan is None:  # pragma: no cover - a foreign key keeps the version
            wire.abort(context, grpc.StatusCode.INTERNAL, f"id: plan version {record.plan_version} is gone")
        return plan

    @staticmethod
    def _refuse_scheduled(context: Any, record: SubscriptionRecord, now: datetime) -> None:
        """One scheduled change at a time: it waits for its instant, then the next may come."""
        life = record.lifecycle
        if life.pending(now) and life.effective_at is not None:
            what = "a cancel" if life.cancel_at is not None else f"a change to plan {record.subscription.plan_code!r}"
            wire.abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"id: {what} is scheduled at {rfc3339_exact(life.effective_at)}; "
                "another change can follow once it took effect",
            )

    def CancelSubscription(
        self, request: subscription_pb2.CancelSubscriptionRequest, context: Any
    ) -> subscription_pb2.CancelSubscriptionResponse:
        """Cancel now, at the end of the period holding now, or at an instant (design section 4:
        the partial period is invoiced, prorated; at a period's end nothing is cut)."""
        tenant = wire.tenant(context)
        now = self.now()
        with self.api.subscription_session(request.id) as session:  # read, decide and save in turn
            record = self._owned_in(context, session, tenant, request.id)
            with wire.errors_as_status(context):
                if request.at_period_end and request.HasField("effective_at"):
                    raise InvalidValue("effective_at", "must be unset when at_period_end is true")
                if len(request.reason) > MAX_REASON:
                    raise InvalidValue("reason", f"must be at most {MAX_REASON} characters, got {len(request.reason)}")
                requested = self._instant(request, now)
            sub, life, status = record.subscription, record.lifecycle, record.status_at(now)
            if status is SubscriptionStatus.CANCELED:
                if self._same_cancel(record, request, requested):
                    return subscription_pb2.CancelSubscriptionResponse(subscription=subscription_message(record, now))
                at = life.cancel_at or life.effective_at
                when = "" if at is None else f" at {rfc3339_exact(at)}"
                wire.abort(
                    context, grpc.StatusCode.FAILED_PRECONDITION, f"id: subscription {record.id!r} was canceled{when}"
                )
            if status is SubscriptionStatus.TRIAL_EXPIRED:
                wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"id: subscription {record.id!r} has ended")
            if life.cancel_at is None:
                self._refuse_scheduled(context, record, now)  # a scheduled cancel may be moved
            if request.at_period_end:
                plan = self._current_plan(context, session, record)
                cycle = cycle_at(sub, plan, life.anchor(sub, now), now)
                if cycle.period is None:
                    wire.abort(
                        context, grpc.StatusCode.FAILED_PRECONDITION, f"id: subscription {record.id!r} has ended"
                    )
                at = cycle.period.end
            else:
                at = max(now if requested is None else requested, sub.start_at)
            reason = request.reason or None
            if life.cancel_at == at and (life.cancel_at_period_end, life.cancel_reason) == (
                request.at_period_end,
                reason,
            ):
                return subscription_pb2.CancelSubscriptionResponse(subscription=subscription_message(record, now))
            canceled = replace(
                life,
                effective_at=at,
                previous_plan_code=None,
                previous_plan_version=None,
                cancel_at=at,
                canceled_at=now,
                cancel_at_period_end=request.at_period_end,
                cancel_reason=reason,
            )
            saved = session.save_subscription(
                sub,
                plan_version=record.plan_version,
                status=SubscriptionStatus.CANCELED,
                lifecycle=canceled,
                recorded_at=now,
            )
            session.add_outbox(subscription_event(SubscriptionEvent.CANCELED, saved, now))
        return subscription_pb2.CancelSubscriptionResponse(subscription=subscription_message(saved, now))

    @staticmethod
    def _same_cancel(record: SubscriptionRecord, request: Any, requested: datetime | None) -> bool:
        """Whether a cancel of a canceled subscription asks for the cancel it got (a replay)."""
        life = record.lifecycle
        if (request.reason or None) != life.cancel_reason:
            return False
        if life.cancel_at is None:  # canceled before instants were kept: a plain cancel replays
            return not request.at_period_end and requested is None
        if request.at_period_end or life.cancel_at_period_end:
            return bool(request.at_period_end and life.cancel_at_period_end)
        if requested is not None:
            return requested == life.cancel_at or (requested < record.subscription.start_at == life.cancel_at)
        return life.canceled_at is not None and life.canceled_at >= life.cancel_at  # it was a cancel now

    def ChangeSubscriptionPlan(
        self, request: subscription_pb2.ChangeSubscriptionPlanRequest, context: Any
    ) -> subscription_pb2.ChangeSubscriptionPlanResponse:
        """Move to the newest version of ``new_plan_code`` now or at ``effective_at``: the period
        open then closes there (prorated, design section 4) and the new plan's periods start there;
        a change ends a trial (the engine's ``change_plan``)."""
        tenant = wire.tenant(context)
        now = self.now()
        with self.api.subscription_session(request.id) as session:  # read, decide and save in turn
            record = self._owned_in(context, session, tenant, request.id)
            with wire.errors_as_status(context):
                if not request.new_plan_code:
                    raise InvalidValue("new_plan_code", "is required")
                requested = self._instant(request, now)
            sub, life = record.subscription, record.lifecycle
            if record.status_at(now) in ENDED:
                wire.abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"id: subscription {record.id!r} has ended")
            if life.cancel_at is not None and life.cancel_at > now:
                wire.abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"id: subscription {record.id!r} is canceled at {rfc3339_exact(life.cancel_at)}",
                )
            with wire.errors_as_status(context):
                plan = self._new_plan(session, tenant, record, request.new_plan_code)
            at = max(now if requested is None else requested, sub.start_at)
            if (plan.code, plan.version) == (sub.plan_code, record.plan_version) and (
                requested is None or life.effective_at == at
            ):  # on it already, or this very change is scheduled: a replay
                return subscription_pb2.ChangeSubscriptionPlanResponse(subscription=subscription_message(record, now))
            self._refuse_scheduled(context, record, now)
            cut = life.trial_end_at is not None and at < life.trial_end_at
            changed = replace(
                life,
                effective_at=at,
                previous_plan_code=sub.plan_code,
                previous_plan_version=record.plan_version,
                plan_changed_at=at,
                trial_end_at=at if cut else life.trial_end_at,
                trial_cut=life.trial_cut or cut,
            )
            saved = session.save_subscription(
                replace(sub, plan_code=plan.code),
                plan_version=plan.version,
                status=SubscriptionStatus.ACTIVE,
                lifecycle=changed,
                recorded_at=now,
            )
            session.add_outbox(subscription_event(SubscriptionEvent.PLAN_CHANGED, saved, now))
        return subscription_pb2.ChangeSubscriptionPlanResponse(subscription=subscription_message(saved, now))

    @staticmethod
    def _new_plan(session: LedgerSession, tenant: str, record: SubscriptionRecord, code: str) -> Plan:
        """The newest version of plan ``code``, in the subscription's currency."""
        plan = session.get_plan(tenant, code)
        if plan is None:
            raise InvalidValue("new_plan_code", f"no plan {code!r}")
        current = session.get_plan(tenant, record.subscription.plan_code, record.plan_version)
        if current is not None and plan.currency_code != current.currency_code:
            raise InvalidValue(
                "new_plan_code", f"plan {plan.code!r} bills in {plan.currency_code}, not in {current.currency_code}"
            )
        return plan
