"""``billing invoices pdf`` and ``billing invoices profile``: a finalized invoice as a PDF, and the
seller its PDFs show (the tenant's profile: name, address, tax id, locale, template). Both use the
ledger's PostgreSQL: ``DATABASE_URL``, else the embedded server under ``--data-dir``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rating.errors import InvalidValue

LEDGER_DIR = ".data/ledger"
DATA_DIR_HELP = "embedded PostgreSQL lives here unless $DATABASE_URL (billing demo's is .data/demo)"


def add_invoices_command(commands: Any) -> None:
    """Register ``billing invoices pdf|profile`` on the CLI's subcommands."""
    invoices = commands.add_parser("invoices", help="invoice documents: a finalized invoice as a PDF, the seller on it")
    actions = invoices.add_subparsers(dest="invoices_command", required=True)
    pdf = actions.add_parser(
        "pdf",
        help="draw a finalized invoice as a PDF (docs/invoices.md)",
        description="Draw the finalized invoice NUMBER (e.g. INV-2026-000042) as a PDF: the tenant's profile "
        "as the seller, the subscription as the customer, every line, discount, tax, credit and amount due.",
    )
    pdf.add_argument("number", metavar="NUMBER", help="the invoice number, e.g. INV-2026-000042")
    pdf.add_argument("-o", "--output", required=True, help="the PDF file to write ('-': standard output)")
    pdf.add_argument("--tenant", default=None, help="the invoice's tenant (needed when several tenants have NUMBER)")
    pdf.add_argument(
        "--template", default=None, help="a Jinja2 HTML template to draw with (default: the tenant's, else built-in)"
    )
    pdf.add_argument("--data-dir", default=LEDGER_DIR, help=DATA_DIR_HELP)
    pdf.set_defaults(run=run_pdf)
    profile = actions.add_parser(
        "profile",
        help="show or change a tenant's profile: the seller on its invoice PDFs",
        description="Without a change, print the tenant's profile as JSON; with one, save it and print it.",
    )
    profile.add_argument("--tenant", required=True)
    profile.add_argument("--name", default=None, help="the seller's name (default: the tenant id)")
    profile.add_argument("--address", default=None, help="the seller's address; '\\n' separates its lines")
    profile.add_argument("--tax-id", default=None, help="the seller's tax id (e.g. an NPWP)")
    profile.add_argument("--locale", default=None, help="how figures and dates are written: en, en_US, id_ID...")
    templates = profile.add_mutually_exclusive_group()
    templates.add_argument("--template", default=None, help="a Jinja2 HTML template file: the tenant's own layout")
    templates.add_argument("--default-template", action="store_true", help="go back to the built-in layout")
    profile.add_argument("--data-dir", default=LEDGER_DIR, help=DATA_DIR_HELP)
    profile.set_defaults(run=run_profile)


def _read_template(path: str) -> str:
    from billing.pdf.render import check_template

    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidValue("--template", f"cannot read {path}: {error}") from None
    return check_template(source, "--template")


def _documents(data_dir: str) -> tuple[Any, Any]:
    """The ledger's engine and its InvoiceDocuments adapter."""
    from billing.database import ledger_engine
    from invoicing.ledger.postgres import PostgresLedger
    from invoicing.ledger.postgres_documents import PostgresInvoiceDocuments

    engine = ledger_engine(Path(data_dir))
    return engine, PostgresInvoiceDocuments(PostgresLedger(engine))


def run_pdf(args: argparse.Namespace) -> int:
    from billing.pdf.documents import InvoicePdfs

    template = None if args.template is None else _read_template(args.template)
    output = None if args.output == "-" else Path(args.output)
    if output is not None and not output.parent.is_dir():
        raise InvalidValue("--output", f"no directory {str(output.parent)!r} to write the PDF in")
    engine, documents = _documents(args.data_dir)
    try:
        drawn = InvoicePdfs(documents).by_number(args.number, args.tenant, template)
    finally:
        engine.dispose()
    if output is None:
        sys.stdout.buffer.write(drawn.pdf)
        sys.stdout.buffer.flush()
        return 0
    try:
        output.write_bytes(drawn.pdf)
    except OSError as error:
        raise InvalidValue("--output", f"cannot write {output}: {error}") from None
    invoice = drawn.stored.invoice
    print(f"{invoice.invoice_number} of tenant {invoice.tenant_id}: {len(drawn.pdf):,} bytes written to {output}")
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from invoicing.engine.printable import TenantProfile
    from rating.limits import bounded_text

    bounded_text(args.tenant, "--tenant")
    template = None if args.template is None else _read_template(args.template)
    engine, documents = _documents(args.data_dir)
    try:
        stored = documents.profile(args.tenant)
        profile = stored or TenantProfile.unnamed(args.tenant)
        changes: dict[str, Any] = {
            key: value
            for key, value in (
                ("name", args.name),
                ("address", None if args.address is None else args.address.replace("\\n", "\n")),
                ("tax_id", args.tax_id),
                ("locale", args.locale),
            )
            if value is not None
        }
        if template is not None or args.default_template:
            changes["template"] = template
        if changes:
            try:
                profile = replace(profile, **changes)
            except InvalidValue as error:
                raise InvalidValue("--" + error.field.replace("_", "-"), error.message) from None
            documents.save_profile(profile)
        elif stored is None:
            print(f"tenant {args.tenant!r} has no profile: its PDFs show its id as the seller", file=sys.stderr)
    finally:
        engine.dispose()
    shown = {
        "tenant_id": profile.tenant_id,
        "name": profile.name,
        "address": profile.address,
        "tax_id": profile.tax_id,
        "locale": profile.locale,
        "template": "built-in" if profile.template is None else f"its own ({len(profile.template):,} characters)",
    }
    json.dump(shown, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
