"""``billing serve`` counts and times every call under the names gRPC dashboards use, the calls
refused for a key included (issue #15.1)."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from billing.api.keys import create_key
from billing.api.server import ApiServer
from invoicing.ledger.api_keys import PostgresApiKeys
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2, invoice_pb2_grpc

pytestmark = pytest.mark.integration

SERVICE = "smallbiznis.invoice.v1.InvoiceService"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_calls_are_counted_by_method_and_code_and_timed(engine: Engine) -> None:
    _, key = create_key(PostgresApiKeys(engine), "metrics-tenant", "test")
    server = ApiServer(engine)
    port = server.start(0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)  # type: ignore[no-untyped-call]
            for _ in range(2):
                invoices.ListInvoices(invoice_pb2.ListInvoicesRequest(), metadata=[("authorization", f"Bearer {key}")])
            with pytest.raises(grpc.RpcError) as refused:
                invoices.ListInvoices(invoice_pb2.ListInvoicesRequest())
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as missing:
                invoices.GetInvoice(
                    invoice_pb2.GetInvoiceRequest(id="404"), metadata=[("authorization", f"Bearer {key}")]
                )
            assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(0)
    registry = server.metrics.registry
    listing = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "ListInvoices"}
    assert value(registry, "grpc_server_started_total", **listing) == 3
    assert value(registry, "grpc_server_handled_total", **listing, grpc_code="OK") == 2
    assert value(registry, "grpc_server_handled_total", **listing, grpc_code="UNAUTHENTICATED") == 1
    getting = {**listing, "grpc_method": "GetInvoice"}
    assert value(registry, "grpc_server_handled_total", **getting, grpc_code="NOT_FOUND") == 1
    assert value(registry, "grpc_server_handling_seconds_count", **listing) == 3
    assert value(registry, "grpc_server_handling_seconds_sum", **listing) > 0
