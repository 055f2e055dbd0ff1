"""Human-readable invoice tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from rating.money import minor_to_major


def print_invoices(invoices: Sequence[dict[str, Any]], dead_letters: Sequence[dict[str, Any]] = ()) -> None:
    console = Console()
    table = Table(title=f"{len(invoices)} invoices")
    for column in ("number", "subscription", "period", "status", "subtotal", "discount", "tax", "total", "due"):
        table.add_column(
            column, justify="right" if column in {"subtotal", "discount", "tax", "total", "due"} else "left"
        )
    for invoice in invoices:
        currency = invoice["currency_code"]

        def money(amount: int, currency: str = currency) -> str:
            return f"{minor_to_major(amount, currency)} {currency}"

        table.add_row(
            invoice["invoice_number"],
            invoice["subscription_id"],
            f"{invoice['billing_period_start'][:10]} → {invoice['billing_period_end'][:10]}",
            invoice["status"],
            money(invoice["subtotal"]),
            money(invoice["discount_total"]),
            money(invoice["tax_total"]),
            money(invoice["total"]),
            money(invoice["amount_due"]),
        )
    console.print(table)
    if dead_letters:
        console.print(f"[yellow]{len(dead_letters)} events dead-lettered[/yellow]")
        for letter in dead_letters:
            console.print(
                f"  {letter['subscription_id']}/{letter['idempotency_key']}: {letter['reason']} ({letter['detail']})"
            )
