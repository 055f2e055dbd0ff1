"""Invoice PDFs read back: invoices finalized by the real path on PostgreSQL (USD, IDR with PPN
11%, BHD; a coupon, tax and a prepaid credit on each) drawn by ``billing invoices pdf`` and by
GetInvoicePdf, their text read back with pypdf and every figure checked, against hand-computed
amounts and against the stored invoice line by line. The CLI's errors are one line and an exit
status; another tenant's invoice is NOT_FOUND."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from pypdf import PdfReader
from sqlalchemy import Engine

from billing.pdf.documents import InvoicePdfs
from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.model import SUBTOTAL_TYPES, Invoice, LineType
from invoicing.engine.printable import MoneyText, TenantProfile
from invoicing.ledger.postgres_documents import PostgresInvoiceDocuments
from rating.money import Money
from schemas.generated.smallbiznis.invoice.v1 import invoice_pb2 as I
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.subscription.v1 import subscription_pb2 as S
from tests.api_harness import Api, pro_plan, serving, status_of
from tests.integration.test_api_cli import billing, one_error
from tests.integration.test_api_invoices import invoice_periods

pytestmark = pytest.mark.integration
SELLER = TenantProfile("t1", "PT Contoh Jaya", "Jl. Sudirman No. 1\nJakarta 10220", "01.234.567.8-901.000")
CREDITS = {"USD": 1000, "IDR": 50_000, "BHD": 5000}
PLANS = {"USD": ("pro", "49.00"), "IDR": ("pro-idr", "490000"), "BHD": ("pro-bhd", "12.5")}
# Usage is api_calls 12345.5 (1000 included, graduated 0.002 to 10000, then 0.000123456789) and
# storage_gb 25 (packages of 10 at 5): 20.166111… and 15 in major units, a coupon of 10% once,
# PPN 11% (region ID) on the discounted subtotal, then the prepaid credit.
EXPECTED = {
    # 4900 + 2017 + 1500 = 8417; -841.7 → -842; 7575 × 11% = 833.25 → 833; 8408 - 1000 = 7408
    "USD": ["$49.00", "12,345.5", "$20.17", "$5.00", "$15.00", "-$8.42", "$84.17", "PPN 11%", "$8.33", "$84.08",
            "-$10.00", "$74.08"],
    # 490000 + 20 + 15 = 490035; -49003.5 → -49004; 441031 × 11% = 48513.41 → 48513; 489544 - 50000
    "IDR": ["Rp 490.000", "12.345,5", "Rp 20", "Rp 5", "Rp 15", "-Rp 49.004", "Rp 490.035", "PPN 11%", "Rp 48.513",
            "Rp 489.544", "-Rp 50.000", "Rp 439.544"],
    # 12500 + 20166 + 15000 = 47666 fils; -4766.6 → -4767; 42899 × 11% = 4718.89 → 4719; 47618 - 5000
    "BHD": ["BHD 12.500", "BHD 20.166", "BHD 5.000", "BHD 15.000", "-BHD 4.767", "BHD 47.666", "PPN 11%", "BHD 4.719",
            "BHD 47.618", "-BHD 5.000", "BHD 42.618"],
}  # fmt: skip
LOCALES = {"USD": "en", "IDR": "id_ID", "BHD": "en"}


def pdf_text(pdf: bytes) -> str:
    """The PDF's text, no-break spaces as spaces."""
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages).replace("\u00a0", " ")


@pytest.fixture
def pdf_api(engine: Engine, tmp_path: Path) -> Iterator[Api]:
    """``billing serve`` with a PDF directory."""
    yield from serving(engine, None, pdf_dir=tmp_path / "pdfs")


@pytest.fixture
def invoiced(pdf_api: Api) -> dict[str, Invoice]:
    """One finalized invoice of t1 per currency (INV-2026-000001 USD, …02 IDR, …03 BHD)."""
    api = pdf_api
    invoices = {}
    for currency, (code, base_price) in PLANS.items():
        api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan(code, base_price, currency)), metadata=api.auth())
        sub = f"sub_{currency.lower()}"
        request = S.CreateSubscriptionRequest(id=sub, plan_code=code, region_code="ID", coupon_code="WELCOME10")
        request.start_at.FromJsonString("2026-01-01T00:00:00Z")
        api.subscriptions.CreateSubscription(request, metadata=api.auth())
        note = CreditNote(sub, CreditType.BALANCE, Money(CREDITS[currency], currency), datetime(2026, 1, 5, tzinfo=UTC))
        with api.ledger.session() as session:
            session.add_credit_note("t1", note)
        invoice_periods(api, sub, 1)
        with api.ledger.session() as session:
            invoices[currency] = session.list_invoices("t1", sub)[0]
    return invoices


def documents(api: Api) -> PostgresInvoiceDocuments:
    return PostgresInvoiceDocuments(api.ledger)


def check_every_figure(text: str, invoice: Invoice, locale: str) -> None:
    """Every figure of the stored invoice, as its locale writes it, is in the PDF's text."""
    money = MoneyText(locale)
    shown = [invoice.invoice_number or "", invoice.subscription_id, "Region ID"]
    for line in invoice.line_items:
        shown.append(money.money(line.amount))
        if line.type in SUBTOTAL_TYPES:
            shown.append(line.description)
            if line.quantity is not None:
                shown.append(money.number(line.quantity))
            if line.unit_price is not None:
                shown.append(money.price(line.unit_price, invoice.currency_code))
        if line.type == LineType.TAX:
            shown.append(line.description)
    negative = {invoice.discount_total, invoice.credits_applied, invoice.amount_paid}
    for amount in (invoice.subtotal, invoice.tax_total, invoice.total, invoice.amount_due, *negative):
        sign = -1 if amount in negative else 1
        shown.append(money.money(Money(sign * amount.amount, amount.currency)))
    missing = [figure for figure in shown if figure.replace("\u00a0", " ") not in text]
    assert missing == [], text


@pytest.mark.parametrize("currency", ["USD", "IDR", "BHD"])
def test_every_figure_of_the_invoice_is_in_its_pdf(pdf_api: Api, invoiced: dict[str, Invoice], currency: str) -> None:
    invoice = invoiced[currency]
    store = documents(pdf_api)
    store.save_profile(TenantProfile(**{**_fields(SELLER), "locale": LOCALES[currency]}))
    drawn = InvoicePdfs(store).by_number(invoice.invoice_number or "", "t1")
    text = pdf_text(drawn.pdf)
    assert [figure for figure in EXPECTED[currency] if figure not in text] == [], text
    check_every_figure(text, invoice, LOCALES[currency])
    issued, due, period = ("1 Feb 2026", "15 Feb 2026", "1 Jan 2026 – 31 Jan 2026") if currency == "IDR" else (
        "Feb 1, 2026", "Feb 15, 2026", "Jan 1, 2026 – Jan 31, 2026")  # fmt: skip
    for seller_text in ("PT Contoh Jaya", "Jl. Sudirman No. 1", "Jakarta 10220", "Tax ID 01.234.567.8-901.000"):
        assert seller_text in text
    assert issued in text and period in text
    assert f"Due date {due}" in text.replace("\n", " ")  # the tenant's net days (14 by default) after issue
    assert invoice.credits_applied.amount == CREDITS[currency] and invoice.discount_total.amount > 0


def _fields(profile: TenantProfile) -> dict[str, object]:
    return {name: getattr(profile, name) for name in ("tenant_id", "name", "address", "tax_id", "locale", "template")}


def test_a_tenant_without_a_profile_is_named_by_its_id(pdf_api: Api, invoiced: dict[str, Invoice]) -> None:
    text = pdf_text(InvoicePdfs(documents(pdf_api)).by_number("INV-2026-000001", None).pdf)
    assert "t1" in text.splitlines()[0] and "Tax ID" not in text


def test_a_tenant_template_lays_it_out_and_reads_no_file(
    pdf_api: Api, invoiced: dict[str, Invoice], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.css"
    secret.write_text("body::after { content: 'LEAKED' }")
    template = (
        f'<link rel="stylesheet" href="file://{secret}"><img src="file:///etc/hostname">'
        "<p>Faktur {{ invoice.invoice_number }} untuk {{ invoice.customer.name }}: {{ invoice.amount_due }}</p>"
    )
    store = documents(pdf_api)
    store.save_profile(TenantProfile("t1", "PT Contoh Jaya", template=template))
    text = pdf_text(InvoicePdfs(store).by_number("INV-2026-000001", "t1").pdf)
    assert "Faktur INV-2026-000001 untuk sub_usd: $74.08" in text and "LEAKED" not in text


def test_get_invoice_pdf_writes_the_tenants_pdf_and_answers_its_path(
    pdf_api: Api, invoiced: dict[str, Invoice]
) -> None:
    api = pdf_api
    listed = api.invoices.ListInvoices(I.ListInvoicesRequest(subscription_id="sub_bhd"), metadata=api.auth()).invoices
    answer = api.invoices.GetInvoicePdf(I.GetInvoicePdfRequest(id=listed[0].id), metadata=api.auth())
    path = Path(answer.pdf_url)
    assert path.name == "INV-2026-000003.pdf" and path.parent.name == "tenant-t1"
    assert not answer.HasField("expires_at")
    text = pdf_text(path.read_bytes())
    assert [figure for figure in EXPECTED["BHD"] if figure not in text] == []
    check_every_figure(text, invoiced["BHD"], "en")
    # another tenant's invoice is as if it did not exist; so is an id that names none
    for tenant, invoice_id in (("t2", listed[0].id), ("t1", "999999"), ("t1", "INV-2026-000003"), ("t1", "9" * 30)):
        code, message = status_of(
            api.invoices.GetInvoicePdf, I.GetInvoicePdfRequest(id=invoice_id), metadata=api.auth(tenant)
        )
        assert (code, message) == (grpc.StatusCode.NOT_FOUND, f"id: no invoice {invoice_id!r}")
    assert [p.name for p in path.parent.parent.iterdir()] == ["tenant-t1"]
    code, message = status_of(api.invoices.GetInvoicePdf, I.GetInvoicePdfRequest(), metadata=api.auth())
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "id: is required")
    # a tenant template that compiles but names what an invoice lacks cannot be drawn
    documents(api).save_profile(TenantProfile("t1", "PT Contoh Jaya", template="{{ invoice.customer_email }}"))
    code, message = status_of(api.invoices.GetInvoicePdf, I.GetInvoicePdfRequest(id=listed[0].id), metadata=api.auth())
    assert code == grpc.StatusCode.FAILED_PRECONDITION and message.startswith("template: cannot fill the template")


def test_without_a_pdf_directory_get_invoice_pdf_is_unavailable(api: Api) -> None:
    code, message = status_of(api.invoices.GetInvoicePdf, I.GetInvoicePdfRequest(id="1"), metadata=api.auth())
    assert code == grpc.StatusCode.UNAVAILABLE and "--pdf-dir" in message


# -- the command line, as processes ---------------------------------------------------------------


def test_billing_invoices_pdf_writes_the_file(
    pdf_api: Api, invoiced: dict[str, Invoice], pg_url: str, tmp_path: Path
) -> None:
    done = billing(pg_url, "invoices", "profile", "--tenant", "t1", "--name", "PT Contoh Jaya", "--locale", "id_ID")
    assert done.returncode == 0, done.stderr
    output = tmp_path / "INV-2026-000002.pdf"
    done = billing(pg_url, "invoices", "pdf", "INV-2026-000002", "--tenant", "t1", "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"INV-2026-000002 of tenant t1: {output.stat().st_size:,} bytes written to")
    text = pdf_text(output.read_bytes())
    assert [figure for figure in EXPECTED["IDR"] if figure not in text] == []
    check_every_figure(text, invoiced["IDR"], "id_ID")
    template = tmp_path / "mine.html"
    template.write_text("<h1>{{ invoice.seller.name }} {{ invoice.total }}</h1>")
    assert "PT Contoh Jaya Rp 489.544" in pdf_text(subprocess_bytes(pg_url, template))


def subprocess_bytes(pg_url: str, template: Path) -> bytes:
    """``billing invoices pdf … -o -``: the PDF on standard output, as bytes."""
    env = {**os.environ, "DATABASE_URL": pg_url}
    command = [sys.executable, "-m", "billing.cli", "invoices", "pdf", "INV-2026-000002", "--template", str(template)]
    done = subprocess.run([*command, "-o", "-"], capture_output=True, timeout=60, env=env, check=True)
    return done.stdout


def test_billing_invoices_pdf_errors_are_one_line(
    pdf_api: Api, invoiced: dict[str, Invoice], pg_url: str, tmp_path: Path
) -> None:
    out = str(tmp_path / "x.pdf")
    error = one_error(billing(pg_url, "invoices", "pdf", "INV-2099-000001", "-o", out), 2)
    assert error == "error: invoice_number: no invoice 'INV-2099-000001'"
    error = one_error(billing(pg_url, "invoices", "pdf", "INV-2026-000001", "--tenant", "t2", "-o", out), 2)
    assert error == "error: invoice_number: no invoice 'INV-2026-000001' of tenant 't2'"
    error = one_error(billing(pg_url, "invoices", "pdf", "INV-2026-000001", "-o", str(tmp_path / "no" / "x.pdf")), 2)
    assert error.startswith("error: --output: no directory")
    bad = tmp_path / "bad.html"
    for source, expected in (
        ("{% if %}", "error: --template: not a valid Jinja2 template"),
        ("{{ invoice.__class__.__mro__ }}", "error: template: cannot fill the template"),
    ):
        bad.write_text(source)
        done = billing(pg_url, "invoices", "pdf", "INV-2026-000001", "--template", str(bad), "-o", out)
        assert one_error(done, 2).startswith(expected)
    error = one_error(billing(pg_url, "invoices", "profile", "--tenant", "t1", "--locale", "xx_NOPE"), 2)
    assert error == "error: --locale: unknown locale 'xx_NOPE' (e.g. en, en_US, id_ID)"
    assert not Path(out).exists()


def test_a_number_of_several_tenants_needs_tenant(
    pdf_api: Api, invoiced: dict[str, Invoice], pg_url: str, tmp_path: Path
) -> None:
    api = pdf_api
    api.pricing.CreatePlan(P.CreatePlanRequest(plan=pro_plan()), metadata=api.auth("t2"))
    request = S.CreateSubscriptionRequest(id="sub_t2", plan_code="pro", region_code="ID")
    request.start_at.FromJsonString("2026-01-01T00:00:00Z")
    api.subscriptions.CreateSubscription(request, metadata=api.auth("t2"))
    invoice_periods(api, "sub_t2", 1, tenant="t2")
    output = tmp_path / "x.pdf"
    error = one_error(billing(pg_url, "invoices", "pdf", "INV-2026-000001", "-o", str(output)), 2)
    assert error == "error: --tenant: invoice 'INV-2026-000001' exists for tenants t1, t2: name one"
    done = billing(pg_url, "invoices", "pdf", "INV-2026-000001", "--tenant", "t2", "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert "sub_t2" in pdf_text(output.read_bytes())


def test_billing_invoices_pdf_help_and_no_database(tmp_path: Path) -> None:
    done = billing("", "invoices", "pdf", "--help")
    assert done.returncode == 0 and "NUMBER" in done.stdout and "--template" in done.stdout
    done = billing(
        "postgresql+psycopg://postgres@127.0.0.1:1/none",
        "invoices",
        "pdf",
        "INV-2026-000001",
        "-o",
        str(tmp_path / "x.pdf"),
    )
    assert one_error(done, 1).startswith("error: the ledger's PostgreSQL does not answer")
    done = billing("", "invoices", "pdf", "INV-1")
    assert done.returncode == 2 and "-o/--output" in done.stderr and "Traceback" not in done.stderr
