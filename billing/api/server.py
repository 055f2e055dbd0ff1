"""``billing serve``'s gRPC server: the services built so far on the ledger's PostgreSQL, every
call but health and reflection authenticated by an API key (billing/api/auth.py).

Requests are capped at ``MAX_REQUEST_BYTES`` (gRPC answers RESOURCE_EXHAUSTED above it). The port
is bound without SO_REUSEPORT: gRPC sets it by default, and then a second server on a taken port
would start and silently share it instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Engine

from billing.api.auth import TenantAuth
from billing.api.billing_service import BillingServicer
from billing.api.credit_service import CreditServicer
from billing.api.engine_ledger import EngineLedgerSteps
from billing.api.generate import GenerateInvoice
from billing.api.ingest import UsageRecorder
from billing.api.invoice_engine_service import InvoiceEngineServicer
from billing.api.invoice_service import InvoiceServicer
from billing.api.keys import authenticate
from billing.api.metrics import ApiMetrics, ApiMetricsInterceptor
from billing.api.payment_service import PaymentServicer
from billing.api.pricing_service import PricingServicer
from billing.api.subscription_service import SubscriptionServicer
from billing.api.tax_service import TaxServicer
from billing.api.usage_access import ServedRating, SharedUsage
from billing.api.usage_service import UsageServicer
from billing.clock import Clock, SystemClock
from billing.payments.metrics import PaymentMetrics
from billing.payments.providers import configured_providers
from billing.payments.service import PaymentService
from billing.pdf.documents import InvoicePdfFiles, InvoicePdfs
from invoicing.engine.payments import ProviderName
from invoicing.ledger.api_keys import PostgresApiKeys
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ledger.postgres_api import PostgresApiLedger
from invoicing.ledger.postgres_documents import PostgresInvoiceDocuments
from invoicing.ledger.postgres_payments import PostgresPayments
from invoicing.ports import PaymentProvider, UsageReader
from schemas.generated.smallbiznis.billing.v1 import billing_pb2, billing_pb2_grpc
from schemas.generated.smallbiznis.credit.v1 import credit_pb2, credit_pb2_grpc
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2, invoice_pb2_grpc
from schemas.generated.smallbiznis.invoice_engine.v1 import invoice_engine_pb2, invoice_engine_pb2_grpc
from schemas.generated.smallbiznis.payment.v1 import payment_pb2, payment_pb2_grpc
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2, pricing_pb2_grpc
from schemas.generated.smallbiznis.rating.v1 import rating_pb2, rating_pb2_grpc
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2, subscription_pb2_grpc
from schemas.generated.smallbiznis.tax.v1 import tax_pb2, tax_pb2_grpc
from schemas.generated.smallbiznis.usage.v1 import usage_pb2, usage_pb2_grpc
from streams.ports import EventLog

MAX_REQUEST_BYTES: Final = 1 << 20
SERVED: Final[tuple[str, ...]] = (
    pricing_pb2.DESCRIPTOR.services_by_name["PricingService"].full_name,
    subscription_pb2.DESCRIPTOR.services_by_name["SubscriptionService"].full_name,
    invoice_pb2.DESCRIPTOR.services_by_name["InvoiceService"].full_name,
    tax_pb2.DESCRIPTOR.services_by_name["TaxService"].full_name,
    credit_pb2.DESCRIPTOR.services_by_name["CreditService"].full_name,
    invoice_engine_pb2.DESCRIPTOR.services_by_name["InvoiceEngineService"].full_name,
    rating_pb2.DESCRIPTOR.services_by_name["RatingService"].full_name,
    usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
    billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name,
    payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
)
"""The services ``billing serve`` answers (their RPCs not built answer UNIMPLEMENTED)."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class ApiServer:
    """The served services on a migrated ledger database (``engine``), the usage store (``usage``
    and ``events``; None when it could not be opened, ``usage_problem`` saying why: the RPCs reading
    usage then answer UNAVAILABLE), Kafka (``recorder``; None: IngestUsage is UNAVAILABLE) and the
    directory GetInvoicePdf draws into (``pdf_dir``; None: it answers UNAVAILABLE); ``providers``
    are the payment providers ChargeInvoice may call (None: those configured in the environment,
    billing/payments/providers)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        max_workers: int = 8,
        usage: UsageReader | None = None,
        events: EventLog | None = None,
        usage_problem: str = "no usage store was given",
        recorder: UsageRecorder | None = None,
        pdf_dir: Path | None = None,
        providers: Mapping[ProviderName, PaymentProvider] | None = None,
    ) -> None:
        ledger = PostgresLedger(engine)
        api = PostgresApiLedger(ledger)
        keys = PostgresApiKeys(engine)
        self.health = health.HealthServicer()
        self.metrics = ApiMetrics()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="api-rpc"),
            # metrics first: they see the calls TenantAuth refuses too
            interceptors=[ApiMetricsInterceptor(self.metrics), TenantAuth(lambda key: authenticate(keys, key))],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
        )
        now = (clock or SystemClock()).now
        pricing_pb2_grpc.add_PricingServiceServicer_to_server(PricingServicer(ledger, api), self.server)  # type: ignore[no-untyped-call]
        subscription_pb2_grpc.add_SubscriptionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            SubscriptionServicer(ledger, api, now), self.server
        )
        shared = None if usage is None else SharedUsage(usage, events)
        log = None if shared is None or events is None else shared
        generate = GenerateInvoice(ledger, api, shared, usage_problem, now)
        pdfs = None if pdf_dir is None else InvoicePdfFiles(InvoicePdfs(PostgresInvoiceDocuments(ledger)), pdf_dir)
        invoice_pb2_grpc.add_InvoiceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InvoiceServicer(api, generate, None if pdfs is None else pdfs.write), self.server
        )
        tax_pb2_grpc.add_TaxServiceServicer_to_server(TaxServicer(ledger), self.server)  # type: ignore[no-untyped-call]
        credit_pb2_grpc.add_CreditServiceServicer_to_server(  # type: ignore[no-untyped-call]
            CreditServicer(ledger, api, now), self.server
        )
        invoice_engine_pb2_grpc.add_InvoiceEngineServiceServicer_to_server(  # type: ignore[no-untyped-call]
            InvoiceEngineServicer(ledger, EngineLedgerSteps(ledger, api, generate, now)), self.server
        )
        billing_pb2_grpc.add_BillingServiceServicer_to_server(  # type: ignore[no-untyped-call]
            BillingServicer(ledger, api, now, shared, usage_problem, recorder), self.server
        )
        usage_pb2_grpc.add_UsageServiceServicer_to_server(  # type: ignore[no-untyped-call]
            UsageServicer(ledger, shared, log, usage_problem, recorder), self.server
        )
        rating_pb2_grpc.add_RatingServiceServicer_to_server(  # type: ignore[no-untyped-call]
            ServedRating(ledger, shared, usage_problem, now), self.server
        )
        self.payment_metrics = PaymentMetrics(self.metrics.registry)
        payments = PaymentService(
            PostgresPayments(ledger),
            configured_providers() if providers is None else providers,
            now,
            self.payment_metrics,
        )
        payment_pb2_grpc.add_PaymentServiceServicer_to_server(PaymentServicer(payments), self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable_server_reflection((*SERVED, health_name, reflection.SERVICE_NAME), self.server)
        self.port: int | None = None

    def start(self, port: int = 0, host: str = "127.0.0.1", tls: tuple[bytes, bytes] | None = None) -> int:
        """Listen on ``host:port`` (0: a free port; ``tls`` = (certificate chain, private key) PEM)
        and serve; returns the bound port. OSError when the address cannot be bound."""
        address = _address(host, port)
        try:
            if tls is None:
                bound = self.server.add_insecure_port(address)
            else:
                credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
                bound = self.server.add_secure_port(address, credentials)
        except RuntimeError as error:  # grpcio raises when the bind fails
            raise OSError(f"cannot listen on {address}: {error}") from None
        if not bound:
            raise OSError(f"cannot listen on {address}")
        self.server.start()
        for service in ("", *SERVED):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.port = int(bound)
        return self.port

    def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, then stop: calls in flight get ``grace`` seconds to finish."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
