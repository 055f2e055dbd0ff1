"""Payments on the PostgreSQL ledger: payment methods, attempts, and settlement (the
PaymentSettlement port), each change in one ledger session (postgres.py) so the invoice, the
attempt, the subscription's status and the ``payment.events`` outbox row commit together.

* An attempt is recorded PENDING (committed) before its provider is called, with the idempotency
  key every call of it carries; a crash after the provider answered leaves it PENDING, and the
  payment worker calls again with the same key (the provider answers the same charge).
* The invoice row is locked (``FOR UPDATE``) by every change of its payments, so a webhook and the
  charge call's answer settle in turn; an amount is applied to the invoice only on the attempt's
  move into SUCCEEDED, so a second word about the same success changes nothing.
* Provider events are settled once per (provider, event id): the row is inserted first and a
  conflict means "settled before"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, and_, func, select, true
from sqlalchemy.dialects.postgresql import insert

from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.lifecycle import (
    PAYABLE,
    Payable,
    PaymentTerms,
    TransitionRefused,
    apply_payment,
    apply_refund,
    apply_void,
    cancel_at,
    is_overdue,
    next_retry_at,
    transition,
)
from invoicing.engine.model import InvoiceStatus
from invoicing.engine.payments import (
    AttemptStatus,
    Charge,
    NoPaymentMethod,
    PayableInvoice,
    PaymentAttempt,
    PaymentEvent,
    PaymentMethod,
    PaymentMethodType,
    ProviderCharge,
    ProviderName,
    attempt_idempotency_key,
    attempt_transition,
)
from invoicing.engine.render import rfc3339
from invoicing.engine.subscriptions import SubscriptionStatus
from invoicing.ledger import tables as t
from invoicing.ledger.postgres import PostgresLedger, PostgresLedgerSession
from invoicing.ledger.postgres_session import utc, utc_or_none
from invoicing.ledger.subscription_events import SubscriptionEvent, subscription_event
from invoicing.ports import OutboxMessage
from rating.errors import InvalidValue, UnknownReference
from rating.money import Money

PAYMENT_EVENTS: Final = "payment.events"
"""PaymentSucceeded, PaymentFailed, PaymentRefunded and InvoiceOverdue, keyed by invoice number."""
DUNNING_CANCEL_REASON: Final = "payment failed: every retry of the tenant's schedule was declined"
"""The reason a subscription canceled by dunning carries (``SubscriptionCanceled``'s ``reason``)."""


def _method(row: Row[Any]) -> PaymentMethod:
    return PaymentMethod(
        id=row.id,
        tenant_id=row.tenant_id,
        subscription_id=row.subscription_id,
        provider=ProviderName(row.provider),
        type=PaymentMethodType(row.type),
        token=row.token,
        display_name=row.display_name,
        last4=row.last4,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        is_default=row.is_default,
        provider_data=dict(row.provider_data),
    )


def _invoice(row: Row[Any]) -> PayableInvoice:
    currency = row.currency_code
    return PayableInvoice(
        id=int(row.id),
        tenant_id=row.tenant_id,
        subscription_id=row.subscription_id,
        invoice_number=row.invoice_number,
        status=InvoiceStatus(row.status),
        amount_paid=Money(int(row.amount_paid), currency),
        amount_due=Money(int(row.amount_due), currency),
        issued_at=utc_or_none(row.issued_at),
        paid_at=utc_or_none(row.paid_at),
        amount_refunded=Money(int(row.amount_refunded), currency),
    )


def _money(amount: Money) -> dict[str, Any]:
    return {"units": amount.amount, "currency_code": amount.currency}


def _announce_invoice(
    session: PostgresLedgerSession, kind: str, invoice: PayableInvoice, now: datetime, fields: dict[str, Any]
) -> None:
    """One ``payment.events`` message about ``invoice`` in the session's transaction, keyed by its
    number: the invoice's identity, then ``fields``, then when."""
    payload = {
        "type": kind,
        "tenant_id": invoice.tenant_id,
        "subscription_id": invoice.subscription_id,
        "invoice_id": str(invoice.id),
        "invoice_number": invoice.invoice_number,
        **fields,
        "at": rfc3339(now),
    }
    session.add_outbox(OutboxMessage(PAYMENT_EVENTS, f"{invoice.tenant_id}/{invoice.invoice_number}", payload))


_ATTEMPT_COLUMNS = (*t.payment_attempts.c, t.invoices.c.invoice_number)


def _attempt_query() -> Any:
    return select(*_ATTEMPT_COLUMNS).join(t.invoices, t.invoices.c.id == t.payment_attempts.c.invoice_id)


def _attempt(row: Row[Any]) -> PaymentAttempt:
    return PaymentAttempt(
        id=int(row.id),
        tenant_id=row.tenant_id,
        invoice_id=int(row.invoice_id),
        invoice_number=row.invoice_number,
        payment_method_id=row.payment_method_id,
        attempt_number=row.attempt_number,
        status=AttemptStatus(row.status),
        amount=Money(int(row.amount), row.currency_code),
        idempotency_key=row.idempotency_key,
        attempted_at=utc(row.attempted_at),
        provider_reference=row.provider_reference,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
        next_retry_at=utc_or_none(row.next_retry_at),
    )


class PostgresPayments:
    """The PaymentLedger port on a PostgresLedger; ``now`` is passed in by the caller (the
    service's clock), never read here."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self.ledger = ledger

    @contextmanager
    def _session(self) -> Iterator[PostgresLedgerSession]:
        with self.ledger.session() as session:
            yield session

    # -- payment methods -------------------------------------------------------------------------

    def attach_method(self, method: PaymentMethod, now: datetime) -> PaymentMethod:
        """Store ``method`` (its id given, or a new one); the subscription's default when asked or
        when it has none yet; the subscription then has a payment method."""
        with self._session() as session:
            record = session.get_subscription(method.subscription_id)
            if record is None or record.subscription.tenant_id != method.tenant_id:
                raise UnknownReference("subscription_id", f"no subscription {method.subscription_id!r}")
            db = session.db
            # attaches to one subscription take turns, so two never both become its first default
            db.execute(
                select(t.subscriptions.c.id).where(t.subscriptions.c.id == method.subscription_id).with_for_update()
            )
            subscription = t.payment_methods.c.subscription_id == method.subscription_id
            has_default = db.execute(
                select(t.payment_methods.c.id).where(subscription, t.payment_methods.c.is_default)
            ).first()
            default = method.is_default or has_default is None
            if default and has_default is not None:
                db.execute(t.payment_methods.update().where(subscription).values(is_default=False, updated_at=now))
            stored = replace(method, id=method.id or f"pm_{uuid.uuid4().hex[:24]}", is_default=default)
            db.execute(
                t.payment_methods.insert().values(
                    id=stored.id,
                    tenant_id=stored.tenant_id,
                    subscription_id=stored.subscription_id,
                    provider=str(stored.provider),
                    type=str(stored.type),
                    token=stored.token,
                    display_name=stored.display_name,
                    last4=stored.last4,
                    exp_month=stored.exp_month,
                    exp_year=stored.exp_year,
                    provider_data=stored.provider_data,
                    is_default=default,
                    created_at=now,
                    updated_at=now,
                )
            )
            if not record.subscription.has_payment_method:
                session.save_subscription(
                    replace(record.subscription, has_payment_method=True),
                    record.plan_version,
                    record.status,
                    lifecycle=record.lifecycle,  # its scheduled change, cancel and plan anchor stay
                    recorded_at=now,
                )
            return stored

    def methods(self, tenant_id: str, subscription_id: str | None) -> list[PaymentMethod]:
        """The tenant's methods (of one subscription when given), oldest first."""
        query = select(t.payment_methods).where(t.payment_methods.c.tenant_id == tenant_id)
        if subscription_id is not None:
            query = query.where(t.payment_methods.c.subscription_id == subscription_id)
        with self._session() as session:
            rows = session.db.execute(query.order_by(t.payment_methods.c.position)).all()
        return [_method(row) for row in rows]

    # -- invoices and attempts -------------------------------------------------------------------

    def invoice(self, tenant_id: str, invoice_id: int) -> PayableInvoice | None:
        with self._session() as session:
            row = session.db.execute(
                select(t.invoices).where(t.invoices.c.id == invoice_id, t.invoices.c.tenant_id == tenant_id)
            ).first()
        return None if row is None else _invoice(row)

    def attempts(self, tenant_id: str, invoice_id: int) -> list[PaymentAttempt]:
        query = _attempt_query().where(
            t.payment_attempts.c.invoice_id == invoice_id, t.payment_attempts.c.tenant_id == tenant_id
        )
        with self._session() as session:
            rows = session.db.execute(query.order_by(t.payment_attempts.c.attempt_number)).all()
        return [_attempt(row) for row in rows]

    def begin_attempt(
        self,
        tenant_id: str,
        invoice_id: int,
        method_id: str | None,
        request_key: str | None,
        now: datetime,
    ) -> Charge:
        """The attempt to send for a charge of the invoice, recorded PENDING and committed before
        any provider is called. A retried request (same ``request_key``) and an attempt still in
        flight (PENDING or PROCESSING) are answered instead of a new charge; a new attempt needs a
        payable invoice with something due. Unknown invoice or method: UnknownReference."""
        with self._session() as session:
            db = session.db
            row = db.execute(
                select(t.invoices)
                .where(t.invoices.c.id == invoice_id, t.invoices.c.tenant_id == tenant_id)
                .with_for_update()
            ).first()
            if row is None:
                raise UnknownReference("invoice_id", f"no invoice {invoice_id}")
            invoice = _invoice(row)
            existing = _attempt_query().where(t.payment_attempts.c.invoice_id == invoice_id)
            if request_key is not None:
                found = db.execute(existing.where(t.payment_attempts.c.request_key == request_key)).first()
                if found is not None:
                    return self._charge(session, _attempt(found), invoice)
            in_flight = db.execute(
                existing.where(
                    t.payment_attempts.c.status.in_([str(AttemptStatus.PENDING), str(AttemptStatus.PROCESSING)])
                )
            ).first()
            if in_flight is not None:
                return self._charge(session, _attempt(in_flight), invoice)
            if invoice.status not in PAYABLE:
                raise TransitionRefused("invoice_id", f"invoice {invoice.invoice_number} is {invoice.status}")
            if invoice.amount_due.amount <= 0:
                raise InvalidValue("invoice_id", f"invoice {invoice.invoice_number} has nothing due")
            method = self._method_for(session, invoice, method_id)
            number = 1 + int(
                db.execute(
                    select(func.coalesce(func.max(t.payment_attempts.c.attempt_number), 0)).where(
                        t.payment_attempts.c.invoice_id == invoice_id
                    )
                ).scalar_one()
            )
            key = attempt_idempotency_key(tenant_id, invoice.invoice_number, number)
            attempt_id = db.execute(
                t.payment_attempts.insert()
                .values(
                    tenant_id=tenant_id,
                    invoice_id=invoice_id,
                    payment_method_id=method.id,
                    attempt_number=number,
                    status=str(AttemptStatus.PENDING),
                    amount=invoice.amount_due.amount,
                    currency_code=invoice.amount_due.currency,
                    idempotency_key=key,
                    request_key=request_key,
                    attempted_at=now,
                    updated_at=now,
                )
                .returning(t.payment_attempts.c.id)
            ).scalar_one()
            attempt = PaymentAttempt(
                int(attempt_id),
                tenant_id,
                invoice_id,
                invoice.invoice_number,
                method.id,
                number,
                AttemptStatus.PENDING,
                invoice.amount_due,
                key,
                now,
            )
            return Charge(attempt, invoice, method)

    def _method_for(
        self, session: PostgresLedgerSession, invoice: PayableInvoice, method_id: str | None
    ) -> PaymentMethod:
        query = select(t.payment_methods).where(t.payment_methods.c.subscription_id == invoice.subscription_id)
        if method_id is None:
            row = session.db.execute(query.where(t.payment_methods.c.is_default)).first()
            if row is None:
                raise NoPaymentMethod(
                    "payment_method_id", f"none given and subscription {invoice.subscription_id} has no default method"
                )
        else:
            row = session.db.execute(query.where(t.payment_methods.c.id == method_id)).first()
            if row is None:
                raise UnknownReference(
                    "payment_method_id", f"no payment method {method_id!r} of the invoice's subscription"
                )
        return _method(row)

    def _charge(self, session: PostgresLedgerSession, attempt: PaymentAttempt, invoice: PayableInvoice) -> Charge:
        row = session.db.execute(
            select(t.payment_methods).where(t.payment_methods.c.id == attempt.payment_method_id)
        ).one()
        return Charge(attempt, invoice, _method(row))

    def charge_of(self, attempt_id: int) -> Charge:
        """An attempt with its invoice and method (the worker resumes PENDING ones)."""
        with self._session() as session:
            row = session.db.execute(_attempt_query().where(t.payment_attempts.c.id == attempt_id)).one()
            attempt = _attempt(row)
            invoice = _invoice(
                session.db.execute(select(t.invoices).where(t.invoices.c.id == attempt.invoice_id)).one()
            )
            return self._charge(session, attempt, invoice)

    # -- outcomes --------------------------------------------------------------------------------

    def record_charge(self, attempt_id: int, answer: ProviderCharge, now: datetime) -> PaymentAttempt:
        """The provider's answer to the charge call, applied as settlement applies a webhook."""
        with self._session() as session:
            row = session.db.execute(_attempt_query().where(t.payment_attempts.c.id == attempt_id)).one()
            return self._apply(
                session, _attempt(row), answer.status, answer.reference, answer.failure_reason, None, now
            )

    def settle(self, event: PaymentEvent, now: datetime) -> bool:
        """PaymentSettlement.settle: apply ``event`` once; False when its (provider, event id) was
        settled before. An event naming no attempt we know is recorded and changes nothing else."""
        with self._session() as session:
            db = session.db
            inserted = db.execute(
                insert(t.payment_events)
                .values(provider=str(event.provider), event_id=event.event_id, status=str(event.status), settled_at=now)
                .on_conflict_do_nothing()
                .returning(t.payment_events.c.event_id)
            ).first()
            if inserted is None:
                return False
            row = None
            if event.idempotency_key is not None:
                row = db.execute(
                    _attempt_query().where(t.payment_attempts.c.idempotency_key == event.idempotency_key)
                ).first()
            if row is None and event.charge_reference is not None:
                row = db.execute(
                    _attempt_query().where(t.payment_attempts.c.provider_reference == event.charge_reference)
                ).first()
            if row is None:
                return True
            attempt = _attempt(row)
            db.execute(
                t.payment_events.update()
                .where(
                    and_(
                        t.payment_events.c.provider == str(event.provider),
                        t.payment_events.c.event_id == event.event_id,
                    )
                )
                .values(attempt_id=attempt.id)
            )
            self._apply(session, attempt, event.status, event.charge_reference, event.failure_reason, event.amount, now)
            return True

    def _apply(
        self,
        session: PostgresLedgerSession,
        attempt: PaymentAttempt,
        status: AttemptStatus,
        reference: str | None,
        failure: str | None,
        paid: Money | None,
        now: datetime,
    ) -> PaymentAttempt:
        """Move the attempt to ``status`` if that is a move forward (else nothing changes) and do
        what the move means: SUCCEEDED pays the invoice (``paid``, what the provider says was paid,
        else the attempt's amount: a transfer short of it is a partial payment), FAILED schedules the retry or, when the
        schedule is used up, makes the subscription PAST_DUE."""
        db = session.db
        invoice = _invoice(
            db.execute(select(t.invoices).where(t.invoices.c.id == attempt.invoice_id).with_for_update()).one()
        )
        if status is attempt.status or not attempt_transition(attempt.status, status):
            if reference and attempt.provider_reference is None:
                db.execute(
                    t.payment_attempts.update()
                    .where(t.payment_attempts.c.id == attempt.id)
                    .values(provider_reference=reference)
                )
                return replace(attempt, provider_reference=reference)
            return attempt
        values: dict[str, Any] = {"status": str(status), "updated_at": now}
        if reference:
            values["provider_reference"] = reference
        changed = replace(attempt, status=status, provider_reference=reference or attempt.provider_reference)
        terms = session.payment_terms(attempt.tenant_id)
        if status is AttemptStatus.SUCCEEDED:
            self._pay(session, invoice, changed, paid or changed.amount, now)
        elif status is AttemptStatus.FAILED:
            values["failure_code"] = (failure or "declined").split(":")[0][:64]
            values["failure_message"] = failure or "the provider declined the charge"
            failed = 1 + int(
                db.execute(
                    select(func.count()).where(
                        t.payment_attempts.c.invoice_id == attempt.invoice_id,
                        t.payment_attempts.c.status == str(AttemptStatus.FAILED),
                    )
                ).scalar_one()
            )
            first = db.execute(
                select(func.min(t.payment_attempts.c.updated_at)).where(
                    t.payment_attempts.c.invoice_id == attempt.invoice_id,
                    t.payment_attempts.c.status == str(AttemptStatus.FAILED),
                )
            ).scalar_one()
            retry = next_retry_at(now if first is None else utc(first), failed, terms)
            values["next_retry_at"] = retry
            changed = replace(
                changed,
                failure_code=values["failure_code"],
                failure_message=values["failure_message"],
                next_retry_at=retry,
            )
            self._announce(session, "PaymentFailed", invoice, changed, now, {"next_retry_at": retry and rfc3339(retry)})
            if retry is None:
                self._subscription_status(session, invoice.subscription_id, SubscriptionStatus.PAST_DUE, now)
        elif status is AttemptStatus.REFUNDED:
            self._refund(session, invoice, changed, failure or "refunded by the provider", now)
        db.execute(t.payment_attempts.update().where(t.payment_attempts.c.id == attempt.id).values(**values))
        return changed

    def _pay(
        self,
        session: PostgresLedgerSession,
        invoice: PayableInvoice,
        attempt: PaymentAttempt,
        amount: Money,
        now: datetime,
    ) -> None:
        """Apply what the invoice can take of ``amount``; the rest (the invoice was paid or voided
        meanwhile, or the customer sent more than due) becomes the subscription's prepaid balance,
        a BALANCE credit note that the next invoices use, so no money received is ever lost."""
        due = invoice.amount_due if invoice.status in PAYABLE else Money.zero(amount.currency)
        applied = Money(min(amount.amount, max(due.amount, 0)), amount.currency)
        status, amount_due = invoice.status, invoice.amount_due
        if applied.amount > 0:
            paid = apply_payment(Payable(invoice.status, invoice.amount_paid, invoice.amount_due), applied)
            status, amount_due = paid.status, paid.amount_due
            session.db.execute(
                t.invoices.update()
                .where(t.invoices.c.id == invoice.id)
                .values(
                    status=str(paid.status),
                    amount_paid=paid.amount_paid.amount,
                    amount_due=paid.amount_due.amount,
                    paid_at=now if paid.status is InvoiceStatus.PAID else None,
                )
            )
        surplus = amount - applied
        if surplus.amount > 0:
            reason = f"payment {attempt.idempotency_key} above what invoice {invoice.invoice_number} had due"
            session.add_credit_note(
                invoice.tenant_id,
                CreditNote(invoice.subscription_id, CreditType.BALANCE, surplus, now, reason, invoice.invoice_number),
            )
        self._announce(
            session,
            "PaymentSucceeded",
            invoice,
            attempt,
            now,
            {
                "invoice_status": str(status),
                "amount_paid": applied.amount,
                "amount_due": amount_due.amount,
                "credited": surplus.amount,
            },
        )
        record = session.get_subscription(invoice.subscription_id)
        if record is not None and record.status is SubscriptionStatus.PAST_DUE:
            self._subscription_status(session, invoice.subscription_id, SubscriptionStatus.ACTIVE, now)

    def _refund(
        self,
        session: PostgresLedgerSession,
        invoice: PayableInvoice,
        attempt: PaymentAttempt,
        reason: str,
        now: datetime,
    ) -> None:
        """The invoice REFUNDED, with a REFUND credit note of the amount naming it."""
        refunded = apply_refund(Payable(invoice.status, invoice.amount_paid, invoice.amount_due))
        session.db.execute(
            t.invoices.update()
            .where(t.invoices.c.id == invoice.id)
            .values(status=str(refunded.status), amount_refunded=invoice.amount_paid.amount)
        )
        note = CreditNote(
            invoice.subscription_id, CreditType.REFUND, attempt.amount, now, reason, invoice.invoice_number
        )
        session.add_credit_note(invoice.tenant_id, note)
        self._announce(session, "PaymentRefunded", invoice, attempt, now, {})

    def void_invoice(self, tenant_id: str, invoice_id: int, reason: str, now: datetime) -> tuple[PayableInvoice, Money]:
        """Void the tenant's unpaid invoice under its row lock: VOID, nothing due, the prepaid credit it
        used given back as a BALANCE note, ``InvoiceVoided`` announced; a VOID invoice answers as it
        is (a replay). UnknownReference for another tenant's; TransitionRefused for a PAID or
        REFUNDED one, or one with a payment on it. Returns the invoice and the credit given back."""
        with self._session() as session:
            row = session.db.execute(
                select(t.invoices)
                .where(t.invoices.c.id == invoice_id, t.invoices.c.tenant_id == tenant_id)
                .with_for_update()
            ).first()
            if row is None:
                raise UnknownReference("invoice_id", f"no invoice {invoice_id}")
            invoice = _invoice(row)
            if invoice.status is InvoiceStatus.VOID:
                return invoice, Money.zero(invoice.amount_due.currency)
            voided = apply_void(Payable(invoice.status, invoice.amount_paid, invoice.amount_due))
            restored = Money(int(row.credits_applied), invoice.amount_due.currency)
            session.db.execute(
                t.invoices.update()
                .where(t.invoices.c.id == invoice.id)
                .values(status=str(voided.status), amount_due=voided.amount_due.amount)
            )
            if restored.amount > 0:
                note = f"credit of voided invoice {invoice.invoice_number} given back"
                session.add_credit_note(
                    invoice.tenant_id,
                    CreditNote(
                        invoice.subscription_id, CreditType.BALANCE, restored, now, note, invoice.invoice_number
                    ),
                )
            fields = {"reason": reason, "credit_restored": _money(restored)}
            _announce_invoice(session, "InvoiceVoided", invoice, now, fields)
            return replace(invoice, status=voided.status, amount_due=voided.amount_due), restored

    def mark_refunded(self, attempt_id: int, reason: str, now: datetime) -> PaymentAttempt:
        """The provider refunded the attempt's charge: the attempt REFUNDED, its PAID invoice REFUNDED."""
        with self._session() as session:
            row = session.db.execute(_attempt_query().where(t.payment_attempts.c.id == attempt_id)).one()
            return self._apply(session, _attempt(row), AttemptStatus.REFUNDED, None, reason, None, now)

    def _announce(
        self,
        session: PostgresLedgerSession,
        kind: str,
        invoice: PayableInvoice,
        attempt: PaymentAttempt,
        now: datetime,
        extra: dict[str, Any],
    ) -> None:
        attempt_fields = {
            "attempt_id": str(attempt.id),
            "attempt_number": attempt.attempt_number,
            "amount": _money(attempt.amount),
            "provider_reference": attempt.provider_reference,
        }
        _announce_invoice(session, kind, invoice, now, {**attempt_fields, **extra})

    @staticmethod
    def _subscription_status(
        session: PostgresLedgerSession, subscription_id: str, status: SubscriptionStatus, now: datetime
    ) -> bool:
        """Write ``status`` (PAST_DUE, ACTIVE again, or CANCELED by dunning) as a new revision at
        ``now``, keeping the lifecycle's instants (a scheduled cancel, the plan anchor); whether it
        was written. Dunning cancels now, as a cancel said through the API would, and announces it;
        while a plan change is scheduled it waits for a later pass (one scheduled change at a time)."""
        record = session.get_subscription(subscription_id)
        if record is None or record.status is SubscriptionStatus.CANCELED or record.status is status:
            return False
        life = record.lifecycle
        if status is SubscriptionStatus.CANCELED:
            if life.pending(now):
                return False
            life = replace(
                life,
                effective_at=now,
                previous_plan_code=None,
                previous_plan_version=None,
                cancel_at=now,
                canceled_at=now,
                cancel_at_period_end=False,
                cancel_reason=DUNNING_CANCEL_REASON,
            )
        saved = session.save_subscription(
            record.subscription, record.plan_version, status, lifecycle=life, recorded_at=now
        )
        if status is SubscriptionStatus.CANCELED:
            session.add_outbox(subscription_event(SubscriptionEvent.CANCELED, saved, now))
        return True

    # -- the payment worker's reads and dunning ---------------------------------------------------

    def stuck_attempts(self) -> list[int]:
        """Attempts still PENDING: their provider call never got an answer committed (a crash, a
        timeout); the worker calls again with the same key."""
        query = select(t.payment_attempts.c.id).where(t.payment_attempts.c.status == str(AttemptStatus.PENDING))
        with self._session() as session:
            return [int(i) for i in session.db.execute(query.order_by(t.payment_attempts.c.id)).scalars()]

    def due_charges(self, now: datetime) -> list[tuple[str, int]]:
        """(tenant, invoice id) of payable invoices with something due whose subscription has a
        default method (still ACTIVE or PAST_DUE) and that have no attempt yet (charged
        automatically after finalization), or whose latest attempt failed with its retry due."""
        a = t.payment_attempts
        latest = (
            select(a.c.status, a.c.next_retry_at)
            .where(a.c.invoice_id == t.invoices.c.id)
            .order_by(a.c.attempt_number.desc())
            .limit(1)
            .lateral()
        )
        query = (
            select(t.invoices.c.tenant_id, t.invoices.c.id)
            .join(t.subscriptions, t.subscriptions.c.id == t.invoices.c.subscription_id)
            .join(
                t.payment_methods,
                and_(
                    t.payment_methods.c.subscription_id == t.invoices.c.subscription_id, t.payment_methods.c.is_default
                ),
            )
            .outerjoin(latest, true())
            .where(
                t.invoices.c.status.in_([str(s) for s in PAYABLE]),
                t.invoices.c.amount_due > 0,
                t.subscriptions.c.status.in_([str(SubscriptionStatus.ACTIVE), str(SubscriptionStatus.PAST_DUE)]),
                (latest.c.status.is_(None))
                | ((latest.c.status == str(AttemptStatus.FAILED)) & (latest.c.next_retry_at <= now)),
            )
            .order_by(t.invoices.c.id)
        )
        with self._session() as session:
            return [(row.tenant_id, int(row.id)) for row in session.db.execute(query)]

    def mark_overdue(self, now: datetime) -> list[str]:
        """PENDING invoices at or past their due instant (issue + the tenant's net days) become
        OVERDUE, each announced; the numbers of those marked."""
        marked: list[str] = []
        with self._session() as session:
            rows = session.db.execute(
                select(t.invoices)
                .where(t.invoices.c.status == str(InvoiceStatus.PENDING))
                .order_by(t.invoices.c.id)
                .with_for_update(skip_locked=True)
            ).all()
            terms: dict[str, PaymentTerms] = {}
            for row in rows:
                invoice = _invoice(row)
                if invoice.tenant_id not in terms:
                    terms[invoice.tenant_id] = session.payment_terms(invoice.tenant_id)
                if not is_overdue(invoice.status, invoice.issued_at, now, terms[invoice.tenant_id]):
                    continue
                status = transition(invoice.status, InvoiceStatus.OVERDUE)
                session.db.execute(t.invoices.update().where(t.invoices.c.id == invoice.id).values(status=str(status)))
                _announce_invoice(session, "InvoiceOverdue", invoice, now, {"amount_due": _money(invoice.amount_due)})
                marked.append(invoice.invoice_number)
        return marked

    def cancel_lapsed(self, now: datetime) -> list[str]:
        """PAST_DUE subscriptions whose tenant cancels after ``cancel_after_days`` and whose last
        failure is that old become CANCELED; their ids."""
        a = t.payment_attempts
        query = (
            select(t.subscriptions.c.id, t.subscriptions.c.tenant_id, func.max(a.c.updated_at).label("since"))
            .join(t.invoices, t.invoices.c.subscription_id == t.subscriptions.c.id)
            .join(a, a.c.invoice_id == t.invoices.c.id)
            .where(
                t.subscriptions.c.status == str(SubscriptionStatus.PAST_DUE),
                a.c.status == str(AttemptStatus.FAILED),
                a.c.next_retry_at.is_(None),
            )
            .group_by(t.subscriptions.c.id, t.subscriptions.c.tenant_id)
        )
        canceled = []
        with self._session() as session:
            for row in session.db.execute(query).all():
                at = cancel_at(utc(row.since), session.payment_terms(row.tenant_id))
                due = at is not None and now >= at
                if due and self._subscription_status(session, row.id, SubscriptionStatus.CANCELED, now):
                    canceled.append(row.id)
        return canceled

    def overdue_counts(self) -> dict[str, int]:
        """OVERDUE invoices per tenant (the overdue gauge)."""
        query = (
            select(t.invoices.c.tenant_id, func.count())
            .where(t.invoices.c.status == str(InvoiceStatus.OVERDUE))
            .group_by(t.invoices.c.tenant_id)
        )
        with self._session() as session:
            return {tenant: int(n) for tenant, n in session.db.execute(query).all()}
