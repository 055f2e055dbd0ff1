"""The catalog in a PostgreSQL ledger session: plan versions, subscriptions and tenants' terms, each
change announced on its ``catalog.*`` topic through the outbox in the same transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, Table, Text, cast, func, select
from sqlalchemy.dialects.postgresql import insert

from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.subscriptions import Lifecycle, Subscription, SubscriptionStatus, lifecycle_of
from invoicing.engine.terms import BillingTerms
from invoicing.ledger import tables as t
from invoicing.ledger.catalog import CATALOG_PLANS, CATALOG_SUBSCRIPTIONS, CATALOG_TERMS, plan_key, plan_version_for
from invoicing.ledger.json_codec import (
    plan_from_json,
    plan_to_json,
    subscription_to_json,
    terms_from_json,
    terms_to_json,
)
from invoicing.ledger.postgres_session import PostgresSessionBase, decimal_or_none, utc
from invoicing.ledger.postgres_writes import PLAN_LOCK, PLAN_VERSION
from invoicing.ports import OutboxMessage, SubscriptionRecord, SubscriptionRevision, TermsRecord
from rating.catalog import Plan
from rating.errors import InvalidValue, UnknownReference
from rating.periods import BillingInterval


def _instant(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class PostgresCatalogSession(PostgresSessionBase):
    """The CatalogSession port."""

    # -- plans ----------------------------------------------------------------------------------

    def save_plan(self, tenant_id: str, plan: Plan) -> None:
        """Insert or replace the version's snapshot; a new or changed snapshot is announced on
        ``catalog.plans`` in this transaction (an identical one is not)."""
        self._store_plan(tenant_id, plan, replace_stored=True)

    def keep_plan(self, tenant_id: str, plan: Plan) -> None:
        """Insert the version's snapshot if no writer stored that version yet (announced only then)."""
        self._store_plan(tenant_id, plan, replace_stored=False)

    def _store_plan(self, tenant_id: str, plan: Plan, *, replace_stored: bool) -> None:
        self._open_savepoint()
        if self.batch is not None:
            self.batch.plans.pop((tenant_id, plan.code, plan.version), None)
        snapshot = plan_to_json(plan)
        statement = insert(t.plans).values(tenant_id=tenant_id, code=plan.code, version=plan.version, snapshot=snapshot)
        identity = ["tenant_id", "code", "version"]
        upsert = (
            statement.on_conflict_do_update(
                index_elements=identity,
                set_={"snapshot": statement.excluded.snapshot},
                # JSON keeps its text, so this also sees a change of metadata key order
                where=cast(t.plans.c.snapshot, Text).is_distinct_from(cast(statement.excluded.snapshot, Text)),
            )
            if replace_stored
            else statement.on_conflict_do_nothing(index_elements=identity)
        )
        if self.db.execute(upsert.returning(t.plans.c.version)).first() is not None:
            key = plan_key(tenant_id, plan.code, plan.version)
            self.add_outbox(OutboxMessage(CATALOG_PLANS, key, {"tenant_id": tenant_id, **snapshot}))

    def save_plan_version(self, tenant_id: str, plan: Plan) -> tuple[int, bool]:
        """The tenant's plan lock (a transaction advisory lock, held until this session ends) is
        taken before the newest version is read, so a writer sees the version the one before it
        committed: the API's CreatePlan and ``billing catalog apply`` alike."""
        self.db.execute(select(func.pg_advisory_xact_lock(PLAN_LOCK, func.hashtext(tenant_id))))
        version, is_new = plan_version_for(plan, self.get_plan(tenant_id, plan.code))
        if is_new:
            self.save_plan(tenant_id, replace(plan, version=version))
        return version, is_new

    def get_plan(self, tenant_id: str, code: str, version: int | None = None) -> Plan | None:
        if version is not None:  # the finalization path: plain SQL, and a batch reads a version once
            key = (tenant_id, code, version)
            cached = None if self.batch is None else self.batch.plans.get(key)
            if cached is not None:
                return cached
            row = self.cur.execute(PLAN_VERSION, key).fetchone()
            plan = None if row is None else plan_from_json(row[0])
            if plan is not None and self.batch is not None:
                self.batch.plans[key] = plan
            return plan
        query = select(t.plans.c.snapshot).where(t.plans.c.tenant_id == tenant_id, t.plans.c.code == code)
        query = (
            query.order_by(t.plans.c.version.desc()) if version is None else query.where(t.plans.c.version == version)
        )
        snapshot = self.db.execute(query.limit(1)).scalar_one_or_none()
        return None if snapshot is None else plan_from_json(snapshot)

    # -- subscriptions -------------------------------------------------------------------------

    @staticmethod
    def _subscription(row: Row[Any]) -> SubscriptionRecord:
        subscription = Subscription(
            id=row.id,
            tenant_id=row.tenant_id,
            plan_code=row.plan_code,
            start_at=utc(row.start_at),
            timezone=row.timezone,
            region_code=row.region_code,
            allow_overage_billing=row.allow_overage_billing,
            trial_days=row.trial_days,
            trial_balance=decimal_or_none(row.trial_balance),
            has_payment_method=row.has_payment_method,
            coupon_code=row.coupon_code,
        )
        interval, status = BillingInterval(row.billing_interval), SubscriptionStatus(row.status)
        lifecycle = Lifecycle(
            effective_at=_instant(row.effective_at),
            previous_plan_code=row.previous_plan_code,
            previous_plan_version=row.previous_plan_version,
            plan_changed_at=_instant(row.plan_changed_at),
            trial_end_at=_instant(row.trial_end_at),
            trial_cut=row.trial_cut,
            cancel_at=_instant(row.cancel_at),
            canceled_at=_instant(row.canceled_at),
            cancel_at_period_end=row.cancel_at_period_end,
            cancel_reason=row.cancel_reason,
        )
        return SubscriptionRecord(subscription, row.plan_version, interval, status, row.revision, lifecycle)

    def _subscription_query(self, table: Table = t.subscriptions) -> Select[Any]:
        """Rows of ``table`` (``subscriptions`` or ``subscription_revisions``) with their plan's interval."""
        interval = t.plans.c.snapshot["billing_interval"].as_string().label("billing_interval")
        return select(table, interval).join(
            t.plans,
            (t.plans.c.tenant_id == table.c.tenant_id)
            & (t.plans.c.code == table.c.plan_code)
            & (t.plans.c.version == table.c.plan_version),
        )

    def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        row = self.db.execute(self._subscription_query().where(t.subscriptions.c.id == subscription_id)).first()
        return None if row is None else self._subscription(row)

    def subscription_revisions(self, subscription_id: str) -> list[SubscriptionRevision]:
        """Every revision of the subscription, oldest first (none for an unknown id)."""
        revisions = t.subscription_revisions
        query = self._subscription_query(revisions).where(revisions.c.id == subscription_id)
        rows = self.db.execute(query.order_by(revisions.c.revision)).all()
        return [SubscriptionRevision(self._subscription(row), utc(row.recorded_at)) for row in rows]

    def save_subscription(
        self,
        subscription: Subscription,
        plan_version: int | None = None,
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
        lifecycle: Lifecycle | None = None,
        recorded_at: datetime | None = None,
    ) -> SubscriptionRecord:
        """Create or change a subscription on a saved plan version (the newest when None), append
        the revision to ``subscription_revisions`` (at ``recorded_at``, the database's clock when
        None) and announce it on ``catalog.subscriptions``, all in this transaction; saving what
        is stored already changes and announces nothing. Concurrent changes of one subscription take turns
        (a row lock), so its revisions and messages follow commit order. Without ``lifecycle``
        the revision takes effect when read, with the trial's nominal end."""
        life = lifecycle_of(subscription) if lifecycle is None else lifecycle
        plan = self.get_plan(subscription.tenant_id, subscription.plan_code, plan_version)
        if plan is None:
            version = "" if plan_version is None else f" version {plan_version}"
            raise UnknownReference(
                "plan_code", f"tenant {subscription.tenant_id} has no plan {subscription.plan_code!r}{version}"
            )
        values = {
            "tenant_id": subscription.tenant_id,
            "plan_code": subscription.plan_code,
            "plan_version": plan.version,
            "start_at": subscription.start_at,
            "timezone": subscription.timezone,
            "region_code": subscription.region_code,
            "allow_overage_billing": subscription.allow_overage_billing,
            "trial_days": subscription.trial_days,
            "trial_balance": subscription.trial_balance,
            "has_payment_method": subscription.has_payment_method,
            "coupon_code": subscription.coupon_code,
            "status": str(status.value),
            "effective_at": life.effective_at,
            "previous_plan_code": life.previous_plan_code,
            "previous_plan_version": life.previous_plan_version,
            "plan_changed_at": life.plan_changed_at,
            "trial_end_at": life.trial_end_at,
            "trial_cut": life.trial_cut,
            "cancel_at": life.cancel_at,
            "canceled_at": life.canceled_at,
            "cancel_at_period_end": life.cancel_at_period_end,
            "cancel_reason": life.cancel_reason,
        }
        for _ in range(2):  # a concurrent creation of the same id: the second pass finds its row
            query = self._subscription_query().where(t.subscriptions.c.id == subscription.id)
            current = self.db.execute(query.with_for_update(of=t.subscriptions)).first()
            if current is not None:
                stored = self._subscription(current)
                if stored.subscription.tenant_id != subscription.tenant_id:
                    raise InvalidValue("tenant_id", f"subscription {subscription.id} belongs to another tenant")
                if (stored.subscription, stored.plan_version, stored.status, stored.lifecycle) == (
                    subscription,
                    plan.version,
                    status,
                    life,
                ):
                    return stored
                revision = stored.revision + 1
                self.db.execute(
                    t.subscriptions.update()
                    .where(t.subscriptions.c.id == subscription.id)
                    .values(**values, revision=revision, updated_at=func.now())
                )
                break
            revision = 1
            inserted = self.db.execute(
                insert(t.subscriptions)
                .values(id=subscription.id, **values, revision=revision)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(t.subscriptions.c.id)
            ).first()
            if inserted is not None:
                break
        else:  # pragma: no cover - the row existed on the second pass
            raise AssertionError(f"subscription {subscription.id} neither found nor inserted")
        record = SubscriptionRecord(subscription, plan.version, plan.billing_interval, status, revision, life)
        saved_at = {} if recorded_at is None else {"recorded_at": recorded_at}
        self.db.execute(
            insert(t.subscription_revisions).values(id=subscription.id, revision=revision, **values, **saved_at)
        )
        self.add_outbox(OutboxMessage(CATALOG_SUBSCRIPTIONS, subscription.id, subscription_to_json(record)))
        return record

    # -- terms ----------------------------------------------------------------------------------

    def get_terms(self, tenant_id: str) -> TermsRecord | None:
        query = select(t.tenant_terms.c.terms, t.tenant_terms.c.revision)
        row = self.db.execute(query.where(t.tenant_terms.c.tenant_id == tenant_id)).first()
        return None if row is None else TermsRecord(terms_from_json(row.terms), int(row.revision))

    def payment_terms(self, tenant_id: str) -> PaymentTerms:
        """The tenant's payment terms (net days, retries, cancel policy); the defaults without terms."""
        record = self.get_terms(tenant_id)
        return PaymentTerms() if record is None else record.terms.payment_terms

    def save_terms(self, terms: BillingTerms) -> TermsRecord:
        """Create or change the tenant's terms and announce them on ``catalog.terms`` in this
        transaction; saving what is stored already (the same ``terms_to_json``) changes and
        announces nothing. Concurrent changes of one tenant's terms take turns (a row lock), so
        their revisions and messages follow commit order. Terms that would not read back
        (``terms_from_json``) are refused, naming the field."""
        self._open_savepoint()
        value = terms_to_json(terms)
        saved = terms_from_json(value)  # what every reader of the row or the topic gets
        table = t.tenant_terms
        for _ in range(2):  # a concurrent creation for the same tenant: the second pass finds its row
            query = select(table.c.terms, table.c.revision).where(table.c.tenant_id == terms.tenant_id)
            current = self.db.execute(query.with_for_update()).first()
            if current is not None:
                if current.terms == value:  # JSONB: lists keep their order, objects compare by key
                    return TermsRecord(terms_from_json(current.terms), int(current.revision))
                revision = int(current.revision) + 1
                self.db.execute(
                    table.update()
                    .where(table.c.tenant_id == terms.tenant_id)
                    .values(terms=value, revision=revision, updated_at=func.now())
                )
                break
            revision = 1
            inserted = self.db.execute(
                insert(table)
                .values(tenant_id=terms.tenant_id, terms=value, revision=revision)
                .on_conflict_do_nothing(index_elements=["tenant_id"])
                .returning(table.c.tenant_id)
            ).first()
            if inserted is not None:
                break
        else:  # pragma: no cover - the row existed on the second pass
            raise AssertionError(f"terms of tenant {terms.tenant_id} neither found nor inserted")
        self.add_outbox(OutboxMessage(CATALOG_TERMS, terms.tenant_id, {**value, "revision": revision}))
        return TermsRecord(saved, revision)
