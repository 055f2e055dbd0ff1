"""The payment worker (``billing worker --role payments``) on the test clock and a real PostgreSQL
ledger: finalized invoices of subscriptions with a default method are charged without being asked,
invoices past their net days become OVERDUE, failed charges are retried on the tenant's schedule
(days after the first failure), the last failure makes the subscription PAST_DUE and the tenant's
policy cancels it later; a success after failures pays and reactivates."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.payments.providers.dummy import DummyProvider
from billing.payments.service import PaymentService, PaymentWorker
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.render import rfc3339_exact
from invoicing.ledger import tables as t
from invoicing.ledger.postgres_payments import DUNNING_CANCEL_REASON, PostgresPayments
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import NOW, Api
from tests.payments_harness import attach, invoice_row, invoices_of, outbox, worker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def set_terms(api: Api, terms: PaymentTerms) -> None:
    with api.ledger.session() as session:
        record = session.get_terms("t1")
        assert record is not None
        session.save_terms(replace(record.terms, payment_terms=terms))


def subscription_status(api: Api, sub: str) -> str:
    with api.ledger.session() as session:
        record = session.get_subscription(sub)
        assert record is not None
        return str(record.status)


def attempts(api: Api) -> list[tuple[str, int, str]]:
    with api.engine.connect() as connection:
        rows = connection.execute(
            select(t.invoices.c.invoice_number, t.payment_attempts.c.attempt_number, t.payment_attempts.c.status)
            .join(t.invoices, t.invoices.c.id == t.payment_attempts.c.invoice_id)
            .order_by(t.payment_attempts.c.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_finalized_invoices_with_a_default_method_are_charged_automatically(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    report = worker(pay_api, dummy).run_once()
    assert [(a.invoice_number, str(a.status)) for a in report.charged] == [
        ("INV-2026-000001", "SUCCEEDED"),
        ("INV-2026-000002", "SUCCEEDED"),
    ]
    assert [i.status for i in invoices_of(pay_api, "sub_1")] == [3, 3]  # INVOICE_STATUS_PAID
    assert (
        invoice_row(pay_api.engine, invoices_of(pay_api, "sub_2")[0].id).status == "OVERDUE"
    )  # no method, past 14 days
    assert worker(pay_api, dummy).run_once().charged == []  # nothing left to charge
    assert len(dummy.charges()) == 2


def test_dunning_retries_on_the_schedule_then_past_due_then_canceled(pay_api: Api, dummy: DummyProvider) -> None:
    set_terms(pay_api, PaymentTerms(net_days=14, retry_days=(1, 3), cancel_after_days=2))
    attach(pay_api, "sub_1", "tok_declines")
    run = worker(pay_api, dummy)
    first = (
        run.run_once()
    )  # 2026-03-10 12:00: the invoices issued 02-01 01:00 are past their 14 days, INV-2 (03-01) not
    assert first.overdue == ["INV-2026-000001", "INV-2026-000003"]  # INV-3: sub_2's, which has no method
    assert [(a.invoice_number, a.next_retry_at) for a in first.charged] == [
        ("INV-2026-000001", NOW + timedelta(days=1)),
        ("INV-2026-000002", NOW + timedelta(days=1)),
    ]
    pay_api.clock.advance_to(NOW + timedelta(days=1) - timedelta(seconds=1))
    assert run.run_once().charged == []  # not yet
    pay_api.clock.advance_to(NOW + timedelta(days=1))
    second = run.run_once()
    assert [(a.attempt_number, a.next_retry_at) for a in second.charged] == [(2, NOW + timedelta(days=3))] * 2
    assert subscription_status(pay_api, "sub_1") == "ACTIVE"
    pay_api.clock.advance_to(NOW + timedelta(days=3))
    third = run.run_once()
    assert [(a.attempt_number, str(a.status), a.next_retry_at) for a in third.charged] == [(3, "FAILED", None)] * 2
    assert subscription_status(pay_api, "sub_1") == "PAST_DUE"
    pay_api.clock.advance_to(NOW + timedelta(days=5) - timedelta(seconds=1))
    late = run.run_once()  # 2026-03-15 11:59:59: INV-2 (03-01 01:00 + 14 days) is overdue; not canceled yet
    assert (late.overdue, late.charged, late.canceled) == (["INV-2026-000002"], [], [])
    pay_api.clock.advance_to(NOW + timedelta(days=5))
    assert run.run_once().canceled == ["sub_1"]
    assert subscription_status(pay_api, "sub_1") == "CANCELED"
    canceled_at = NOW + timedelta(days=5)  # cut there, as a cancel said through the API would be
    with pay_api.ledger.session() as session:
        record = session.get_subscription("sub_1")
        assert record is not None and (record.lifecycle.cancel_at, record.lifecycle.effective_at) == (canceled_at,) * 2
    (event,) = [e for e in outbox(pay_api.engine, "subscription.events") if e["type"] == "SubscriptionCanceled"]
    assert (event["subscription_id"], event["cancel_at"], event["reason"]) == (
        "sub_1",
        rfc3339_exact(canceled_at),
        DUNNING_CANCEL_REASON,
    )
    assert len(attempts(pay_api)) == 6 and len(dummy.charges()) == 6
    kinds = [(e["type"], e["invoice_number"]) for e in outbox(pay_api.engine)]
    assert kinds.count(("PaymentFailed", "INV-2026-000001")) == 3
    assert ("InvoiceOverdue", "INV-2026-000002") in kinds
    assert run.service.metrics.overdue.labels(tenant="t1")._value.get() == 3
    assert run.service.metrics.attempts.labels(provider="DUMMY", status="FAILED")._value.get() == 6


def test_a_retry_that_succeeds_pays_and_reactivates_the_subscription(pay_api: Api, dummy: DummyProvider) -> None:
    set_terms(pay_api, PaymentTerms(retry_days=(1,)))
    attach(pay_api, "sub_2", "tok_declines")
    run = worker(pay_api, dummy)
    run.run_once()
    pay_api.clock.advance_to(NOW + timedelta(days=1))
    run.run_once()
    assert subscription_status(pay_api, "sub_2") == "PAST_DUE"
    attach(pay_api, "sub_2", "tok_succeeds")  # the customer adds a card that works; charged by hand
    from tests.payments_harness import charge

    invoice = invoices_of(pay_api, "sub_2")[0]
    assert charge(pay_api, invoice.id).status == 3  # SUCCEEDED
    assert (invoice_row(pay_api.engine, invoice.id).status, subscription_status(pay_api, "sub_2")) == ("PAID", "ACTIVE")


def worker_env(api: Api, dummy: DummyProvider, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``billing worker --role payments`` process on the test's ledger, with
    DUMMY journaled where the test's own provider counts its charges."""
    return {
        "DATABASE_URL": api.engine.url.render_as_string(hide_password=False),
        "PAYMENTS_DUMMY": "on",
        "PAYMENTS_DUMMY_DIR": str(dummy.journal.parent if dummy.journal else tmp_path),
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }


def test_the_worker_command_runs_a_pass_and_says_what_it_did(
    pay_api: Api, dummy: DummyProvider, tmp_path: Path
) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")
    clock = tmp_path / "clock"
    clock.write_text("2026-03-10T12:00:00Z")
    env = worker_env(pay_api, dummy, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "billing.cli", "worker", "--role", "payments", "--once", "--clock-file", str(clock)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["charged"] == [["INV-2026-000001", "SUCCEEDED"], ["INV-2026-000002", "SUCCEEDED"]]
    assert len(dummy.charges()) == 2  # the same journal: the provider a test can count
    bare = subprocess.run(
        [sys.executable, "-m", "billing.cli", "worker", "--role", "payments", "--once"],
        env={k: v for k, v in env.items() if not k.startswith("PAYMENTS_")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # without a provider it keeps the books only: nothing charged, and it says why
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout.strip().splitlines()[-1])["charged"] == []
    assert "no payment provider is configured" in bare.stderr and "Traceback" not in bare.stderr
    assert len(dummy.charges()) == 2
    unreachable = {**env, "DATABASE_URL": "postgresql+psycopg://billing@127.0.0.1:9/ledger"}
    down = subprocess.run(
        [sys.executable, "-m", "billing.cli", "worker", "--role", "payments", "--once"],
        env=unreachable,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.startswith("error: the ledger's PostgreSQL does not answer")


def test_paid_at_is_the_instant_of_the_success(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_2", "tok_succeeds")
    pay_api.clock.advance_to(datetime(2026, 3, 11, 9, tzinfo=UTC))
    worker(pay_api, dummy).run_once()
    assert invoice_row(pay_api.engine, invoices_of(pay_api, "sub_2")[0].id).paid_at == datetime(
        2026, 3, 11, 9, tzinfo=UTC
    )


def test_without_a_provider_the_worker_keeps_the_books_and_charges_nothing(pay_api: Api, dummy: DummyProvider) -> None:
    attach(pay_api, "sub_1", "tok_succeeds")  # a default method the server knew; this worker has no provider
    bookkeeper = PaymentWorker(PaymentService(PostgresPayments(pay_api.ledger), {}, pay_api.clock.now))
    pay_api.clock.advance_to(datetime(2026, 4, 1, tzinfo=UTC))  # past every invoice's 14 net days
    report = bookkeeper.run_once()
    assert sorted(report.overdue) == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    assert (report.charged, report.resumed, attempts(pay_api), dummy.charges()) == ([], [], [], [])


def test_the_running_worker_serves_its_metrics(pay_api: Api, dummy: DummyProvider, tmp_path: Path) -> None:
    """``billing worker --role payments --metrics-port``, scraped as Prometheus would: the charges it
    made by provider and status, the overdue invoices per tenant, its last pass; on loopback."""
    attach(pay_api, "sub_1", "tok_succeeds")
    clock = tmp_path / "clock"
    clock.write_text("2026-03-10T12:00:00Z")  # sub_2's January invoice is past its 14 net days
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = worker_env(pay_api, dummy, tmp_path)
    command = [sys.executable, "-m", "billing.cli", "worker", "--role", "payments", "--interval", "0.5"]
    command += ["--clock-file", str(clock), "--metrics-port", str(port)]
    worker_process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wanted = {
            'billing_payment_attempts_total{provider="DUMMY",status="SUCCEEDED"} 2.0',
            'billing_invoices_overdue{tenant="t1"} 1.0',
        }
        text, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline and not wanted <= set(text.splitlines()):
            assert worker_process.poll() is None, worker_process.communicate()[1]
            with contextlib.suppress(OSError):  # not listening yet
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            time.sleep(0.3)
        assert wanted <= set(text.splitlines()), text
        assert "billing_payment_worker_last_pass_timestamp_seconds 1.773144e+09" in text
    finally:
        worker_process.terminate()
        worker_process.wait(30)


def test_attaching_a_method_keeps_a_scheduled_cancel(pay_api: Api) -> None:
    """Attaching a method writes a revision; the cancel said before it stays scheduled, not lost
    nor applied at once."""
    create = S.CreateSubscriptionRequest(id="sub_3", plan_code="flat", region_code="ID", has_payment_method=False)
    create.start_at.FromJsonString("2026-03-01T00:00:00Z")
    pay_api.subscriptions.CreateSubscription(create, metadata=pay_api.auth())
    request = S.CancelSubscriptionRequest(id="sub_3", at_period_end=True, reason="moving")
    scheduled = pay_api.subscriptions.CancelSubscription(request, metadata=pay_api.auth()).subscription
    attach(pay_api, "sub_3", "tok_succeeds")

    def current() -> S.Subscription:
        got = S.GetSubscriptionRequest(id="sub_3")
        return pay_api.subscriptions.GetSubscription(got, metadata=pay_api.auth()).subscription

    kept = current()
    assert kept.has_payment_method
    assert (kept.status, kept.cancel_at, kept.cancel_at_period_end, kept.cancel_reason) == (
        S.SUBSCRIPTION_STATUS_ACTIVE,
        scheduled.cancel_at,
        True,
        "moving",
    )
    pay_api.clock.advance_to(scheduled.cancel_at.ToDatetime(tzinfo=UTC))
    assert current().status == S.SUBSCRIPTION_STATUS_CANCELED
