"""Protobuf contracts: every service of the seed is generated with a stub, a servicer and each RPC
it lists; money is Money, decimals are strings, and the generated code matches the .proto files."""

from __future__ import annotations

import filecmp
import importlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SERVICES: dict[str, tuple[str, set[str]]] = {
    "pricing": ("PricingService", {"GetPlan", "GetPlanByCode", "ListPlans", "CreatePlan"}),
    "subscription": (
        "SubscriptionService",
        {"CreateSubscription", "GetSubscription", "ListSubscriptions", "CancelSubscription", "ChangeSubscriptionPlan"},
    ),
    "usage": ("UsageService", {"IngestUsage", "ListUsage", "GetUsageSummary", "ListUsageMetrics"}),
    "billing": (
        "BillingService",
        {
            "OnSubscriptionCreated",
            "RecordUsage",
            "GetTrialStatus",
            "GetBalance",
            "GetCurrentBillingPeriod",
            "ListBillingPeriods",
        },
    ),
    "rating": ("RatingService", {"RateSubscription", "GetCurrentRating"}),
    "invoice": (
        "InvoiceService",
        {"GetInvoice", "ListInvoices", "GenerateInvoiceForSubscription", "GetInvoicePdf"},
    ),
    "invoice_engine": (
        "InvoiceEngineService",
        {
            "BuildChargesFromRating",
            "BuildInvoice",
            "RunProration",
            "ApplyTax",
            "ApplyDiscount",
            "ApplyCredit",
            "FinalizeInvoice",
            "GenerateInvoiceNumber",
            "OpenBillingPeriod",
            "CloseBillingPeriod",
        },
    ),
    "tax": ("TaxService", {"ListTaxRules", "CalculateTax"}),
    "credit": ("CreditService", {"CreateCreditNote", "ListCreditNotes"}),
    "payment": (
        "PaymentService",
        {
            "ListPaymentMethods",
            "AttachPaymentMethod",
            "ChargeInvoice",
            "GetPaymentAttempts",
            "RefundInvoice",
            "VoidInvoice",
        },
    ),
}

# The raw event value is a double by design (as on Kafka); nothing else is.
DOUBLES_ALLOWED = {"smallbiznis.usage.v1.UsageRecord.value"}


def pb2(service: str) -> ModuleType:
    return importlib.import_module(f"schemas.generated.smallbiznis.{service}.v1.{service}_pb2")


def pb2_grpc(service: str) -> ModuleType:
    return importlib.import_module(f"schemas.generated.smallbiznis.{service}.v1.{service}_pb2_grpc")


def messages(file: FileDescriptor) -> list[Descriptor]:
    found: list[Descriptor] = []
    pending = list(file.message_types_by_name.values())
    while pending:
        message = pending.pop()
        found.append(message)
        pending.extend(message.nested_types)
    return found


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_has_every_rpc_of_the_seed(service: str) -> None:
    name, rpcs = SERVICES[service]
    descriptor = pb2(service).DESCRIPTOR
    assert descriptor.package == f"smallbiznis.{service}.v1"
    assert descriptor.name == f"smallbiznis/{service}/v1/{service}.proto"
    assert set(descriptor.services_by_name[name].methods_by_name) == rpcs


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_stub_and_servicer_cover_every_rpc(service: str) -> None:
    name, rpcs = SERVICES[service]
    module = pb2_grpc(service)
    servicer = getattr(module, f"{name}Servicer")
    assert callable(getattr(module, f"add_{name}Servicer_to_server"))
    with grpc.insecure_channel("localhost:1") as channel:  # channels connect lazily: no I/O here
        stub = getattr(module, f"{name}Stub")(channel)
        for rpc in rpcs:
            assert callable(getattr(stub, rpc)), rpc
            assert callable(getattr(servicer, rpc)), rpc


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_floating_point_money_or_quantities(service: str) -> None:
    for message in messages(pb2(service).DESCRIPTOR):
        for field in message.fields:
            if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
                assert field.full_name in DOUBLES_ALLOWED, field.full_name
            assert not field.name.endswith("_cents"), field.full_name
            if field.name in {"quantity", "unit_price", "rate_percent", "total_value", "included_units"}:
                assert field.type == FieldDescriptor.TYPE_STRING, field.full_name


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_amounts_are_money_and_times_are_timestamps(service: str) -> None:
    money_fields = {"amount", "subtotal", "discount_total", "tax_total", "total", "amount_due", "amount_paid", "tax"}
    for message in messages(pb2(service).DESCRIPTOR):
        for field in message.fields:
            if field.name in money_fields:
                assert field.message_type is not None, field.full_name
                assert field.message_type.full_name == "smallbiznis.common.v1.Money", field.full_name
            if field.name.endswith(("_at", "_start", "_end", "_time")) and field.type != FieldDescriptor.TYPE_BOOL:
                assert field.message_type is not None, field.full_name
                assert field.message_type.full_name == "google.protobuf.Timestamp", field.full_name


def test_invoice_enums_match_the_seed() -> None:
    invoice = pb2("invoice")
    line_types = {v.name for v in invoice.InvoiceLineItemType.DESCRIPTOR.values}
    assert line_types == {
        f"INVOICE_LINE_ITEM_TYPE_{t}"
        for t in ("UNSPECIFIED", "RECURRING", "USAGE", "OVERAGE", "DISCOUNT", "TAX", "ADJUSTMENT")
    }
    statuses = {v.name for v in invoice.InvoiceStatus.DESCRIPTOR.values}
    assert statuses == {
        f"INVOICE_STATUS_{s}" for s in ("UNSPECIFIED", "DRAFT", "PENDING", "PAID", "OVERDUE", "VOID", "REFUNDED")
    }
    credit_types = {v.name for v in pb2("credit").CreditNoteType.DESCRIPTOR.values}
    assert credit_types == {f"CREDIT_NOTE_TYPE_{t}" for t in ("UNSPECIFIED", "ADJUSTMENT", "REFUND", "BALANCE")}
    providers = {v.name for v in pb2("payment").PaymentProvider.DESCRIPTOR.values}
    assert providers == {f"PAYMENT_PROVIDER_{p}" for p in ("UNSPECIFIED", "STRIPE", "XENDIT", "MIDTRANS", "DUMMY")}


def test_rating_result_carries_money_and_decimal_strings_across_packages() -> None:
    money = importlib.import_module("schemas.generated.smallbiznis.common.v1.money_pb2")
    rating = pb2("rating")
    engine = pb2("invoice_engine")
    item = rating.RatingResultItem(
        metric_code="api_calls",
        quantity="10000.5",
        amount=money.Money(units=1_900, currency_code="USD"),
        currency_code="USD",
        metadata={"tier_1_units": "9000", "tier_2_units": "1000.5"},
    )
    result = rating.RatingResult(
        subscription_id="sub_1",
        items=[item],
        rated_at=timestamp_pb2.Timestamp(seconds=1_767_225_600),
        period_start=timestamp_pb2.Timestamp(seconds=1_767_225_600),
        period_end=timestamp_pb2.Timestamp(seconds=1_769_904_000),
    )
    request = engine.BuildChargesFromRatingRequest(tenant_id="t1", subscription_id="sub_1", rating_result=result)
    decoded = engine.BuildChargesFromRatingRequest.FromString(request.SerializeToString())
    assert decoded == request
    assert decoded.rating_result.items[0].amount.units == 1_900
    assert decoded.rating_result.items[0].quantity == "10000.5"
    assert not decoded.rating_result.items[0].HasField("unit_price")
    assert pickle.loads(pickle.dumps(decoded)) == decoded


def test_generated_code_is_what_generate_sh_produces(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run schemas/generate.sh")
    fresh = tmp_path / "generated"
    subprocess.run(
        ["bash", str(ROOT / "schemas" / "generate.sh"), str(fresh)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    committed = ROOT / "schemas" / "generated"

    def differences(comparison: filecmp.dircmp[str]) -> list[str]:
        found = [f"{comparison.left}/{name}" for name in comparison.left_only + comparison.right_only]
        found += [f"{comparison.left}/{name}" for name in comparison.diff_files]
        for sub in comparison.subdirs.values():
            found += differences(sub)
        return found

    comparison = filecmp.dircmp(committed, fresh, ignore=["__pycache__"])
    assert differences(comparison) == [], "schemas/generated is stale or edited: run schemas/generate.sh"
