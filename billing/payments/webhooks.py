"""``POST /webhooks/{provider}``: the payment providers' notifications, verified and settled.

Each request, in order:
1. the path names a configured provider (404 otherwise); the body is bounded: no
   ``Content-Length`` answers 411, more than ``max_body`` bytes 413, unread;
2. the provider's WebhookVerifier checks the signature and reads the event: a bad or missing
   signature answers 401, an unreadable body 400, with no detail (the reason is logged, never a
   secret, a header or the body); a genuine notification without an outcome answers 200, unsettled;
3. PaymentSettlement.settle applies the event once per (provider, event id): 200 both when it was
   settled now and when it was settled before (the provider's redelivery), so retries stop;
4. a settlement whose database is down answers 503, so the provider delivers again later.

The server is the standard library's threading HTTP server in a daemon thread, like the metrics
endpoint (docs/decisions/0008-webhooks-on-the-standard-library-server.md)."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from invoicing.ports import PaymentSettlement, WebhookIgnored, WebhookMalformed, WebhookRejected, WebhookVerifier
from rating.errors import BillingError

log = logging.getLogger("billing.webhooks")

LOOPBACK = "127.0.0.1"
MAX_BODY = 64 * 1024
"""Providers' notifications are a few kilobytes; anything far larger is not one of them."""
READ_TIMEOUT_SECONDS = 10.0
"""A client that stops sending mid-body loses its connection instead of holding a thread."""
_PATH = re.compile(r"^/webhooks/([a-z]+)/?$")


def verifiers_from_env(environ: Mapping[str, str] | None = None) -> dict[str, WebhookVerifier]:
    """The verifier of every provider whose webhook secret is set, by its path name: ``stripe``
    from ``STRIPE_WEBHOOK_SECRET``, ``xendit`` from ``XENDIT_CALLBACK_TOKEN``, ``midtrans`` from
    ``MIDTRANS_SERVER_KEY`` (each also as ``NAME_FILE``)."""
    from billing.clock import SystemClock
    from billing.payments.providers.midtrans import MidtransWebhookVerifier
    from billing.payments.providers.stripe import StripeWebhookVerifier
    from billing.payments.providers.xendit import XenditWebhookVerifier
    from billing.payments.secrets import provider_secret

    env = os.environ if environ is None else environ
    stripe_secret = provider_secret("STRIPE_WEBHOOK_SECRET", env)
    found: dict[str, WebhookVerifier | None] = {
        "stripe": None if stripe_secret is None else StripeWebhookVerifier(stripe_secret, SystemClock().now),
        "xendit": XenditWebhookVerifier.from_env(env),
        "midtrans": MidtransWebhookVerifier.from_env(env),
    }
    return {name: verifier for name, verifier in found.items() if verifier is not None}


def _database_down(error: Exception) -> bool:
    """The settlement's store could not be reached (as opposed to a bug, which answers 500)."""
    from sqlalchemy import exc

    if isinstance(error, exc.TimeoutError | exc.OperationalError | exc.InterfaceError):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


class WebhookServer:
    """The webhook endpoint over a mapping of path name (``stripe``, ``xendit``, ``midtrans``) to
    that provider's verifier, and the settlement that applies what they verify."""

    def __init__(
        self,
        verifiers: Mapping[str, WebhookVerifier],
        settlement: PaymentSettlement,
        max_body: int = MAX_BODY,
    ) -> None:
        self.verifiers = dict(verifiers)
        self.settlement = settlement
        self.max_body = max_body
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int, host: str = LOOPBACK) -> int:
        """Listen on ``host:port`` (0: any free port) and answer from a daemon thread; the port."""
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="billing-webhooks", daemon=True)
        self._thread.start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def handle(self, provider: str, headers: Mapping[str, str], body: bytes) -> tuple[HTTPStatus, str]:
        """The answer to one notification of a configured provider: status and a one-word outcome."""
        verifier = self.verifiers[provider]
        try:
            event = verifier.verify(headers, body)
        except WebhookIgnored as ignored:
            log.info("webhook %s acknowledged without settling: %s", provider, ignored.reason)
            return HTTPStatus.OK, "ignored"
        except WebhookMalformed as malformed:
            log.warning("webhook %s refused, unreadable: %s", provider, malformed.reason)
            return HTTPStatus.BAD_REQUEST, "malformed"
        except WebhookRejected as rejected:
            log.warning("webhook %s refused, not authenticated: %s", provider, rejected.reason)
            return HTTPStatus.UNAUTHORIZED, "unauthenticated"
        except Exception:  # a verifier's bug: answered (the provider retries), never a dropped connection
            log.exception("webhook %s: the verifier failed", provider)
            return HTTPStatus.INTERNAL_SERVER_ERROR, "error"
        try:
            settled = self.settlement.settle(event)
        except BillingError as error:
            log.warning("webhook %s event %s not settled: %s", provider, event.event_id, error)
            return HTTPStatus.UNPROCESSABLE_ENTITY, "unprocessable"
        except Exception as error:
            if _database_down(error):
                down = type(error).__name__
                log.warning("webhook %s event %s not settled, database down: %s", provider, event.event_id, down)
                return HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"
            log.exception("webhook %s event %s failed to settle", provider, event.event_id)
            return HTTPStatus.INTERNAL_SERVER_ERROR, "error"
        log.info("webhook %s event %s %s", provider, event.event_id, "settled" if settled else "was settled before")
        return HTTPStatus.OK, "settled" if settled else "duplicate"


class _Handler(BaseHTTPRequestHandler):
    endpoint: WebhookServer
    timeout = READ_TIMEOUT_SECONDS
    protocol_version = "HTTP/1.1"
    server_version = "billing-webhooks"
    sys_version = ""

    def do_POST(self) -> None:
        match = _PATH.match(self.path.split("?", 1)[0])
        provider = match.group(1) if match else None
        if provider is None or provider not in self.endpoint.verifiers:
            self._drop_body()
            return self._answer(HTTPStatus.NOT_FOUND, "unknown")
        length_header = self.headers.get("Content-Length")
        if length_header is None or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return self._answer(HTTPStatus.LENGTH_REQUIRED, "length required")
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._answer(HTTPStatus.BAD_REQUEST, "malformed")
        if length > self.endpoint.max_body:
            log.warning("webhook %s refused: a body of %d bytes (at most %d)", provider, length, self.endpoint.max_body)
            self.close_connection = True  # its body is never read
            return self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too large")
        try:
            body = self.rfile.read(length)
        except OSError:  # the client stalled past the read timeout or went away: nobody to answer
            body = b""
        if len(body) < length:
            log.info("webhook %s: the client sent %d of %d bytes and stopped", provider, len(body), length)
            self.close_connection = True
            return None
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, outcome = self.endpoint.handle(provider, headers, body)
        self._answer(status, outcome)

    def do_GET(self) -> None:
        self._not_allowed()

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def _not_allowed(self) -> None:
        self._drop_body()
        self._answer(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", {"Allow": "POST"})

    def _drop_body(self) -> None:
        """A request whose body is not read cannot share the connection with the next one."""
        if self.headers.get("Content-Length") not in (None, "0") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True

    def _answer(self, status: HTTPStatus, outcome: str, extra: Mapping[str, str] | None = None) -> None:
        payload = json.dumps({"status": outcome}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status is HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "60")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines to the logger (never headers or bodies), not to stderr."""
        log.debug("%s " + format, self.address_string(), *args)
