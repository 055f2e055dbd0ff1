"""Payments under faults, on a real PostgreSQL ledger with the DUMMY provider journaled on disk (its
charges outlive our processes, as a real provider's do): the payment worker SIGKILLed between the
provider's answer and our commit, a provider that times out, a webhook delivered twice, and a
webhook that arrives before the charge call returns. Never a double charge, never a lost
success, and the invoice ends PAID with one PaymentSucceeded on the outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from billing.payments.providers.dummy import DummyProvider
from billing.payments.service import PaymentService, PaymentSettlementService
from invoicing.engine.payments import AttemptStatus, PaymentEvent, ProviderName
from invoicing.ledger.postgres_payments import PostgresPayments
from rating.money import Money
from schemas.generated.smallbiznis.payment.v1 import payment_pb2 as PM
from tests.api_harness import Api
from tests.payments_harness import attach, charge, invoice_row, invoices_of, outbox, worker

pytestmark = [pytest.mark.faults, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]

# A payment worker whose provider is the real DUMMY on the shared journal, and which dies by SIGKILL
# the moment the provider has answered, before record_charge can commit the answer.
KILLED_AFTER_ANSWER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from sqlalchemy import create_engine
    from billing.clock import TestClock
    from billing.payments.providers.dummy import DummyProvider
    from billing.payments.service import PaymentService, PaymentWorker
    from invoicing.ledger.postgres import PostgresLedger
    from invoicing.ledger.postgres_payments import PostgresPayments
    from invoicing.engine.payments import ProviderName
    from datetime import datetime

    class DiesAfterAnswer(DummyProvider):
        def charge(self, request):
            answer = super().charge(request)
            os.kill(os.getpid(), signal.SIGKILL)
            return answer

    url, journal, now = sys.argv[1:4]
    clock = TestClock(datetime.fromisoformat(now))
    payments = PostgresPayments(PostgresLedger(create_engine(url)))
    service = PaymentService(payments, {ProviderName.DUMMY: DiesAfterAnswer(Path(journal))}, clock.now)
    PaymentWorker(service).run_once()
    """
)


def test_a_worker_killed_between_the_answer_and_the_commit_charges_once_and_keeps_the_success(
    pay_api: Api, dummy: DummyProvider
) -> None:
    attach(pay_api, "sub_2", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_2")[0]
    assert dummy.journal is not None
    url = pay_api.engine.url.render_as_string(hide_password=False)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ANSWER, url, str(dummy.journal.parent), pay_api.clock.now().isoformat()],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(dummy.charges()) == 1  # the provider charged
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid) == ("OVERDUE", 0)  # our commit never happened
    attempts = payments(pay_api).attempts("t1", int(invoice.id))
    assert [(a.attempt_number, a.status) for a in attempts] == [(1, AttemptStatus.PENDING)]
    report = worker(pay_api, dummy).run_once()  # the restart
    assert [(a.attempt_number, a.status) for a in report.resumed] == [(1, AttemptStatus.SUCCEEDED)]
    assert report.charged == []  # the invoice is paid: no new attempt
    assert len(dummy.charges()) == 1  # the same key answered the same charge
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due) == ("PAID", 1110, 0)
    assert payment_events(pay_api) == ["PaymentSucceeded"]


def payments(api: Api) -> PostgresPayments:
    return PostgresPayments(api.ledger)


def payment_events(api: Api) -> list[str]:
    """The payment outcomes announced on the outbox (InvoiceOverdue left out)."""
    return [e["type"] for e in outbox(api.engine) if e["type"].startswith("Payment")]


def test_a_provider_timing_out_leaves_the_attempt_pending_and_the_resend_pays_once(
    pay_api: Api, dummy: DummyProvider
) -> None:
    attach(pay_api, "sub_2", "tok_times_out_once")
    invoice = invoices_of(pay_api, "sub_2")[0]
    first = charge(pay_api, invoice.id)
    assert (first.status, first.attempt_number) == (PM.PAYMENT_ATTEMPT_STATUS_PENDING, 1)
    again = charge(pay_api, invoice.id)  # asked again meanwhile: the attempt in flight, resent with its key
    assert (again.id, again.status) == (first.id, PM.PAYMENT_ATTEMPT_STATUS_SUCCEEDED)
    assert worker(pay_api, dummy).run_once().resumed == []
    assert len(dummy.charges()) == 1
    assert invoice_row(pay_api.engine, invoice.id).status == "PAID"
    assert pay_api.server is not None
    attempts = pay_api.server.payment_metrics.attempts
    assert attempts.labels(provider="DUMMY", status="UNAVAILABLE")._value.get() == 1


def success(event_id: str, key: str | None, reference: str | None = None, amount: int | None = None) -> PaymentEvent:
    return PaymentEvent(
        ProviderName.DUMMY,
        event_id,
        AttemptStatus.SUCCEEDED,
        charge_reference=reference,
        idempotency_key=key,
        amount=None if amount is None else Money(amount, "USD"),
    )


def test_a_webhook_delivered_twice_settles_once(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_2", "tok_processing")
    invoice = invoices_of(pay_api, "sub_2")[0]
    attempt = charge(pay_api, invoice.id)
    assert attempt.status == PM.PAYMENT_ATTEMPT_STATUS_PROCESSING
    settlement = PaymentSettlementService(payments(pay_api), pay_api.clock.now)
    event = success("evt_1", None, attempt.provider_transaction_id)
    assert settlement.settle(event) is True
    assert settlement.settle(event) is False
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid) == ("PAID", 1110)
    assert payment_events(pay_api) == ["PaymentSucceeded"]
    late_failure = PaymentEvent(ProviderName.DUMMY, "evt_2", AttemptStatus.FAILED, attempt.provider_transaction_id)
    assert settlement.settle(late_failure) is True  # recorded, but an attempt never moves back
    assert payments(pay_api).attempts("t1", int(invoice.id))[0].status is AttemptStatus.SUCCEEDED
    assert len(dummy.charges()) == 1


def test_a_webhook_before_the_charge_call_returns_is_not_paid_twice(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_2", "tok_succeeds")
    invoice = invoices_of(pay_api, "sub_2")[0]
    store = payments(pay_api)
    service = PaymentService(store, {ProviderName.DUMMY: dummy}, pay_api.clock.now)
    begun = store.begin_attempt("t1", int(invoice.id), None, None, pay_api.clock.now())  # step 1 committed
    settlement = PaymentSettlementService(store, pay_api.clock.now)
    assert settlement.settle(success("evt_early", begun.attempt.idempotency_key)) is True  # the webhook wins
    assert invoice_row(pay_api.engine, invoice.id).status == "PAID"
    answered = service.send(begun)  # then the charge call returns, with the same charge
    assert (answered.status, answered.provider_reference) == (AttemptStatus.SUCCEEDED, dummy.charges()[0]["reference"])
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due) == ("PAID", 1110, 0)
    assert payment_events(pay_api) == ["PaymentSucceeded"]
    assert len(dummy.charges()) == 1


def test_a_partial_payment_leaves_the_rest_due_and_the_next_charge_takes_it(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_2", "tok_processing")  # a transfer whose amount the customer chooses
    invoice = invoices_of(pay_api, "sub_2")[0]
    attempt = charge(pay_api, invoice.id)
    settlement = PaymentSettlementService(payments(pay_api), pay_api.clock.now)
    assert settlement.settle(success("evt_part", None, attempt.provider_transaction_id, amount=500)) is True
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due, row.paid_at) == ("PENDING", 500, 610, None)
    attach(pay_api, "sub_2", "tok_succeeds")
    rest = charge(pay_api, invoice.id)
    assert (rest.attempt_number, rest.amount.units, rest.status) == (2, 610, PM.PAYMENT_ATTEMPT_STATUS_SUCCEEDED)
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due) == ("PAID", 1110, 0)


def test_money_the_invoice_cannot_take_becomes_prepaid_balance(pay_api: Api, dummy: DummyProvider) -> None:
    """A transfer above what is due, and a success reported for an invoice paid meanwhile: the
    invoice takes what it can, the rest is the subscription's balance; nothing received is lost."""
    attach(pay_api, "sub_2", "tok_processing")
    invoice = invoices_of(pay_api, "sub_2")[0]
    attempt = charge(pay_api, invoice.id)
    settlement = PaymentSettlementService(payments(pay_api), pay_api.clock.now)
    assert settlement.settle(success("evt_more", None, attempt.provider_transaction_id, amount=2000)) is True
    row = invoice_row(pay_api.engine, invoice.id)
    assert (row.status, row.amount_paid, row.amount_due) == ("PAID", 1110, 0)
    with pay_api.ledger.session() as session:
        assert session.credit_balance("sub_2", "USD") == Money(890, "USD")
    (event,) = [e for e in outbox(pay_api.engine) if e["type"] == "PaymentSucceeded"]
    assert (event["amount_paid"], event["credited"], event["invoice_status"]) == (1110, 890, "PAID")


def test_payment_events_go_to_a_topic_the_relay_creates() -> None:
    from invoicing.ledger.postgres_payments import PAYMENT_EVENTS as WRITTEN
    from streams.kafka.topics import OUTBOX_TOPICS, PAYMENT_EVENTS, topic_config

    assert WRITTEN == PAYMENT_EVENTS and PAYMENT_EVENTS in OUTBOX_TOPICS
    assert topic_config(PAYMENT_EVENTS) == {"cleanup.policy": "delete"}  # events, not state: never compacted
