"""The webhook endpoint of ``billing serve`` over real HTTP: a genuine Xendit or Midtrans
notification is settled once and its redelivery answered 200 as a duplicate; a tampered body, a
wrong or missing token or signature, an unreadable or oversize body, an unknown provider are
refused without detail and never reach the settlement; a settlement whose database is down
answers 503 so the provider retries; and no secret ever reaches a log line.

The ``settlement`` fixture records what the endpoint hands to a settlement and what it answered,
around ``InMemorySettlement`` (once per (provider, event id), the port's promise), so these tests
see the endpoint alone. The ledger's own settlement behind the same endpoint, from a charge to a
PAID invoice and a duplicate redelivery, is tests/integration/test_webhook_settlement.py."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, text

from billing.payments.providers.midtrans import MidtransProvider, MidtransWebhookVerifier, order_id_for
from billing.payments.providers.xendit import XenditProvider, XenditWebhookVerifier
from billing.payments.webhooks import MAX_BODY, WebhookServer, verifiers_from_env
from invoicing.engine.payments import AttemptStatus, ChargeRequest, PaymentEvent, ProviderName
from invoicing.ports import PaymentSettlement, ProviderUnavailable, WebhookVerifier
from rating.errors import UnknownReference
from rating.money import Money

pytestmark = pytest.mark.integration

XENDIT_TOKEN = "xendit-callback-token-kept-secret-0123456789"
XENDIT_KEY = "xnd_development_secret-key-kept-secret"
MIDTRANS_KEY = "SB-Mid-server-key-kept-secret-0123456789"
KEY = "acme:INV-2026-000042:attempt-1"


class InMemorySettlement:
    """The stand-in PaymentSettlement: applies each (provider, event id) once."""

    def __init__(self) -> None:
        self.seen: set[tuple[ProviderName, str]] = set()
        self._lock = threading.Lock()

    def settle(self, event: PaymentEvent) -> bool:
        with self._lock:
            if (event.provider, event.event_id) in self.seen:
                return False
            self.seen.add((event.provider, event.event_id))
            return True


class RecordingSettlement:
    """A PaymentSettlement around another: every event handed to it (``calls``), and those it
    settled now (``settled``, by (provider, event id))."""

    def __init__(self, inner: PaymentSettlement) -> None:
        self.inner = inner
        self.calls: list[PaymentEvent] = []
        self.settled: dict[tuple[ProviderName, str], PaymentEvent] = {}
        self._lock = threading.Lock()

    def settle(self, event: PaymentEvent) -> bool:
        settled = self.inner.settle(event)
        with self._lock:
            self.calls.append(event)
            if settled:
                self.settled[(event.provider, event.event_id)] = event
        return settled


class DatabaseSettlement:
    """A settlement that first reaches its PostgreSQL, as the ledger's does."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_pre_ping=True)

    def settle(self, event: PaymentEvent) -> bool:
        with self.engine.connect() as connection:
            connection.execute(text("select 1"))
        return True


def verifiers() -> dict[str, WebhookVerifier]:
    return {"xendit": XenditWebhookVerifier(XENDIT_TOKEN), "midtrans": MidtransWebhookVerifier(MIDTRANS_KEY)}


@pytest.fixture
def settlement() -> RecordingSettlement:
    return RecordingSettlement(InMemorySettlement())  # merging #14: the ledger's settlement goes inside


@contextmanager
def serving(settlement: PaymentSettlement, max_body: int = MAX_BODY) -> Iterator[str]:
    """The endpoint's base URL while a WebhookServer runs on a free loopback port."""
    server = WebhookServer(verifiers(), settlement, max_body=max_body)
    port = server.start(0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def endpoint(settlement: RecordingSettlement) -> Iterator[str]:
    with serving(settlement) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def database_down() -> Iterator[str]:
    settlement = DatabaseSettlement(f"postgresql+psycopg://billing@127.0.0.1:{closed_port()}/billing")
    with serving(settlement) as url:
        yield url
    settlement.engine.dispose()


def xendit_paid(**extra: Any) -> bytes:
    return json.dumps(
        {
            "id": "593f4ed1c3d3bb7f39733d83",
            "external_id": KEY,
            "user_id": "5781d19b2e2385880609791c",
            "status": "PAID",
            "merchant_name": "Acme",
            "amount": 150000,
            "paid_amount": 150000,
            "currency": "IDR",
            "payment_channel": "BCA",
            **extra,
        }
    ).encode()


def midtrans_settled(transaction_status: str = "settlement", status_code: str = "200") -> dict[str, Any]:
    order_id, gross = order_id_for(KEY), "150000.00"
    return {
        "transaction_status": transaction_status,
        "transaction_id": "513f1f01-c9da-474c-9fc9-d5c64364b709",
        "status_code": status_code,
        "signature_key": hashlib.sha512(f"{order_id}{status_code}{gross}{MIDTRANS_KEY}".encode()).hexdigest(),
        "payment_type": "bank_transfer",
        "order_id": order_id,
        "gross_amount": gross,
        "fraud_status": "accept",
        "currency": "IDR",
    }


def post(endpoint: str, provider: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{endpoint}/webhooks/{provider}", content=body, headers=headers or {}, timeout=10)


def test_xendit_notification_is_settled_once(endpoint: str, settlement: RecordingSettlement) -> None:
    headers = {"x-callback-token": XENDIT_TOKEN, "webhook-id": "whk-1", "Content-Type": "application/json"}
    first = post(endpoint, "xendit", xendit_paid(), headers)
    again = post(endpoint, "xendit", xendit_paid(), headers)  # Xendit's redelivery of the same event

    assert (first.status_code, first.json()) == (200, {"status": "settled"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    [event] = settlement.settled.values()
    assert event.event_id == "whk-1" and event.status is AttemptStatus.SUCCEEDED
    assert event.idempotency_key == KEY and event.amount == Money(150_000, "IDR")


def test_midtrans_notification_is_settled_once(endpoint: str, settlement: RecordingSettlement) -> None:
    body = json.dumps(midtrans_settled()).encode()
    assert post(endpoint, "midtrans", body).json() == {"status": "settled"}
    assert post(endpoint, "midtrans", body).json() == {"status": "duplicate"}
    [event] = settlement.settled.values()
    assert event.charge_reference == order_id_for(KEY) and event.status is AttemptStatus.SUCCEEDED


def test_concurrent_redeliveries_settle_once(endpoint: str, settlement: RecordingSettlement) -> None:
    body = json.dumps(midtrans_settled()).encode()
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(endpoint, "midtrans", body).json()["status"]))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == ["duplicate"] * 7 + ["settled"]
    assert len(settlement.settled) == 1 and len(settlement.calls) == 8


def test_pending_notification_is_acknowledged_and_not_settled(endpoint: str, settlement: RecordingSettlement) -> None:
    answer = post(endpoint, "midtrans", json.dumps(midtrans_settled("pending", "201")).encode())
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored"})
    assert settlement.calls == []


@pytest.mark.parametrize(
    ("provider", "body", "headers", "status"),
    [
        ("xendit", xendit_paid(), {}, 401),  # no x-callback-token
        ("xendit", xendit_paid(), {"x-callback-token": "guessed"}, 401),
        ("xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN[:-1]}, 401),
        ("xendit", b"{not json", {"x-callback-token": XENDIT_TOKEN}, 400),
        ("midtrans", json.dumps({**midtrans_settled(), "gross_amount": "1.00"}).encode(), {}, 401),  # tampered
        ("midtrans", json.dumps({**midtrans_settled(), "signature_key": None}).encode(), {}, 401),  # unsigned
        ("midtrans", b"order_id=1", {}, 400),
    ],
)
def test_refused_notifications_never_reach_the_settlement(
    endpoint: str,
    settlement: RecordingSettlement,
    provider: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="billing.webhooks"):
        answer = post(endpoint, provider, body, headers)
    assert answer.status_code == status
    assert answer.json() == {"status": "unauthenticated" if status == 401 else "malformed"}  # no detail
    assert settlement.calls == []
    assert f"webhook {provider} refused" in caplog.text  # the reason is logged for the operator


def test_oversize_body_is_refused_unread(settlement: RecordingSettlement) -> None:
    with serving(settlement, max_body=1024) as endpoint:
        padded = xendit_paid(description="x" * 2048)
        answer = post(endpoint, "xendit", padded, {"x-callback-token": XENDIT_TOKEN})
        assert (answer.status_code, answer.json()) == (413, {"status": "too large"})
        assert post(endpoint, "xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN}).status_code == 200
    assert len(settlement.settled) == 1


def test_unknown_provider_wrong_method_and_no_length(endpoint: str, settlement: RecordingSettlement) -> None:
    assert post(endpoint, "paypal", b"{}").status_code == 404
    assert post(endpoint, "xendit/extra", b"{}").status_code == 404
    assert httpx.post(f"{endpoint}/other", content=b"{}").status_code == 404
    wrong = httpx.get(f"{endpoint}/webhooks/xendit")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            b"POST /webhooks/xendit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 411")
    assert settlement.calls == []


def test_a_client_that_stops_mid_body_is_dropped(endpoint: str, settlement: RecordingSettlement) -> None:
    host, port = endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b'POST /webhooks/xendit HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"id": 1')
        raw.shutdown(socket.SHUT_WR)
        assert raw.recv(4096) == b""
    assert settlement.calls == []
    assert post(endpoint, "xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN}).status_code == 200


class RefusingSettlement:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def settle(self, event: PaymentEvent) -> bool:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "outcome"),
    [
        (
            UnknownReference("charge_reference", "no attempt of Xendit invoice 593f4ed1c3d3bb7f39733d83"),
            422,
            "unprocessable",
        ),
        (RuntimeError("a bug"), 500, "error"),
    ],
)
def test_settlement_refusals_and_failures_are_answered(error: Exception, status: int, outcome: str) -> None:
    with serving(RefusingSettlement(error)) as endpoint:
        answer = post(endpoint, "xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN})
    assert (answer.status_code, answer.json()) == (status, {"status": outcome})


def test_database_down_answers_503_so_the_provider_retries(database_down: str) -> None:
    answer = post(database_down, "xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN})
    assert (answer.status_code, answer.json()) == (503, {"status": "unavailable"})
    assert answer.headers["retry-after"] == "60"


def test_secrets_never_reach_the_logs(endpoint: str, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    """Every log line of a charge, a refused credential, a timeout and webhooks good and bad, at
    DEBUG (httpx and httpcore included), is free of every secret and of its Basic encoding."""
    secrets = [XENDIT_TOKEN, XENDIT_KEY, MIDTRANS_KEY]
    secrets += [base64.b64encode(f"{secret}:".encode()).decode() for secret in secrets]
    request = ChargeRequest(KEY, Money(150_000, "IDR"), "ANY", "sub-7", "INV-2026-000042", "Usage")
    httpserver.expect_request("/v2/invoices", method="GET").respond_with_json([])
    httpserver.expect_request("/v2/invoices", method="POST").respond_with_json(
        {"error_code": "INVALID_API_KEY"}, status=401
    )
    httpserver.expect_request("/v2/charge").respond_with_json({"status_code": "500"})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderUnavailable):
            XenditProvider(XENDIT_KEY, base_url=httpserver.url_for("/")).charge(request)
        base = httpserver.url_for("/")
        with pytest.raises(ProviderUnavailable):
            MidtransProvider(MIDTRANS_KEY, base, base).charge(
                ChargeRequest(KEY, Money(1000, "IDR"), "gopay", "s", "i", "d")
            )
        post(endpoint, "xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN})
        post(endpoint, "xendit", xendit_paid(), {"x-callback-token": XENDIT_TOKEN + "-wrong"})
        post(endpoint, "midtrans", json.dumps({**midtrans_settled(), "gross_amount": "1.00"}).encode())
        post(endpoint, "midtrans", json.dumps(midtrans_settled()).encode())
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    assert "webhook xendit refused" in logged and "httpx" in {r.name for r in caplog.records}
    for secret in secrets:
        assert secret not in logged
    assert XENDIT_KEY not in repr(XenditProvider(XENDIT_KEY)) and MIDTRANS_KEY not in repr(verifiers())


def test_verifiers_from_the_environment(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(XENDIT_TOKEN + "\n")
    found = verifiers_from_env({"XENDIT_CALLBACK_TOKEN_FILE": str(token_file), "MIDTRANS_SERVER_KEY": MIDTRANS_KEY})
    assert sorted(found) == ["midtrans", "xendit"]
    assert found["xendit"].verify({"x-callback-token": XENDIT_TOKEN}, xendit_paid()).status is AttemptStatus.SUCCEEDED
    assert verifiers_from_env({}) == {}


def billing_serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XENDIT_", "MIDTRANS_", "STRIPE_"))}
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhooks-port", "0"], "error: --webhooks-port: no provider's webhook secret is set"),
        (["--webhooks-port", "70000"], "error: --webhooks-port: must be 0 to 65535"),
    ],
)
def test_serve_refuses_webhooks_it_cannot_verify(args: list[str], message: str) -> None:
    done = billing_serve(*args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(message), done.stderr
