"""Invoice PDFs as the CLI and GetInvoicePdf ask for them: find the tenant's invoice, its
customer (the subscription) and seller (the tenant's profile), and draw it with the template
given, else the tenant's own, else the built-in one."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from billing.pdf.render import default_template, render_pdf
from invoicing.engine.printable import Customer, TenantProfile, printable_invoice
from invoicing.ports import InvoiceDocuments, StoredInvoice
from rating.errors import InvalidValue, UnknownReference


@dataclass(frozen=True, slots=True)
class InvoicePdf:
    """A drawn invoice and the stored invoice it was drawn from."""

    stored: StoredInvoice
    pdf: bytes


class InvoicePdfs:
    """Draws a tenant's finalized invoices; never another tenant's."""

    def __init__(self, documents: InvoiceDocuments) -> None:
        self.documents = documents

    def by_number(self, invoice_number: str, tenant_id: str | None, template: str | None = None) -> InvoicePdf:
        """The invoice of that number (of ``tenant_id``; without it, the number must be one
        tenant's only); UnknownReference when there is none, InvalidValue when several tenants have it."""
        found = self.documents.numbered(invoice_number, tenant_id)
        if not found:
            of = "" if tenant_id is None else f" of tenant {tenant_id!r}"
            raise UnknownReference("invoice_number", f"no invoice {invoice_number!r}{of}")
        if len(found) > 1:
            tenants = ", ".join(sorted(stored.invoice.tenant_id for stored in found))
            raise InvalidValue("--tenant", f"invoice {invoice_number!r} exists for tenants {tenants}: name one")
        return InvoicePdf(found[0], self.draw(found[0], template))

    def by_id(self, tenant_id: str, invoice_id: int) -> InvoicePdf | None:
        """The tenant's invoice of that ledger id, drawn; None when the tenant has no such invoice."""
        stored = self.documents.invoice(tenant_id, invoice_id)
        return None if stored is None else InvoicePdf(stored, self.draw(stored))

    def draw(self, stored: StoredInvoice, template: str | None = None) -> bytes:
        invoice = stored.invoice
        seller = self.documents.profile(invoice.tenant_id) or TenantProfile.unnamed(invoice.tenant_id)
        record = self.documents.subscription(invoice.tenant_id, invoice.subscription_id)
        if record is None:  # an invoice outlives nothing, but be plain about a missing catalog row
            customer = Customer(invoice.subscription_id)
        else:
            subscription = record.subscription
            customer = Customer(subscription.id, subscription.timezone, subscription.region_code)
        printable = printable_invoice(invoice, seller, customer, due_at=stored.due_at)
        return render_pdf(printable, template or seller.template or default_template())


class InvoicePdfFiles:
    """GetInvoicePdf's files: each drawn anew on request (an invoice's payments change what it
    shows) into ``directory/tenant-<tenant>/<number>.pdf``, replaced whole, never half-written."""

    def __init__(self, pdfs: InvoicePdfs, directory: Path) -> None:
        self.pdfs = pdfs
        self.directory = directory

    def write(self, tenant_id: str, invoice_id: int) -> Path | None:
        """The path of the tenant's invoice's PDF; None when the tenant has no such invoice."""
        drawn = self.pdfs.by_id(tenant_id, invoice_id)
        if drawn is None:
            return None
        number = drawn.stored.invoice.invoice_number or str(invoice_id)
        folder = self.directory / f"tenant-{quote(tenant_id, safe='')}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{quote(number, safe='')}.pdf"
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".drawing-", suffix=".pdf", delete=False) as file:
            try:
                file.write(drawn.pdf)
                file.close()
                os.replace(file.name, path)
            except BaseException:
                Path(file.name).unlink(missing_ok=True)
                raise
        return path.resolve()
