"""An invoice's printable figures: what its PDF shows, formatted, from the finalized invoice, the
seller (the tenant's profile) and the customer (its subscription). Pure: no template, no drawing
(billing/pdf/ does both); Babel only formats numbers and dates from its CLDR tables.

Every amount is formatted from its integer minor units in the currency's own exponent (the
table of rating/money.py: IDR none, USD two, BHD three), never through a float; unit prices keep
every digit they have, with at least the currency's minor digits."""

from __future__ import annotations

import re
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import NumberPattern, format_currency
from babel.numbers import format_decimal as babel_decimal

from invoicing.engine.model import SUBTOTAL_TYPES, Invoice, InvoiceLineItem, LineType
from rating.errors import InvalidValue
from rating.limits import MAX_TEXT, text_problem
from rating.money import Money, currency_exponent, minor_to_major
from rating.numbers import format_decimal
from rating.periods import zone

DEFAULT_LOCALE = "en"
_LETTER_THEN_DIGIT = re.compile(r"(?<=[A-Za-z])(?=[0-9])")
"""CLDR's currency spacing, which Babel leaves out: a symbol ending in a letter is set apart from
the digits after it by a no-break space (``IDR 1,500``, ``Rp 1.500``; ``$1.00``, ``US$4,90`` stay)."""
MAX_ADDRESS = 1000
"""Characters of a seller's address (lines included)."""


def parse_locale(name: str, field_name: str = "locale") -> Locale:
    """A CLDR locale (``en``, ``id_ID``, ``ar_BH``), rejected by name when unknown."""
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise InvalidValue(field_name, f"unknown locale {name!r} (e.g. en, en_US, id_ID)") from None


@dataclass(frozen=True, slots=True)
class TenantProfile:
    """The seller on a tenant's invoices: its name, address (lines separated by newlines) and tax
    id, the locale its figures are written in, and its own invoice template (None: the built-in)."""

    tenant_id: str
    name: str
    address: str = ""
    tax_id: str = ""
    locale: str = DEFAULT_LOCALE
    template: str | None = None

    def __post_init__(self) -> None:
        for name, value in (("name", self.name), ("tax_id", self.tax_id)):
            problem = text_problem(value, MAX_TEXT) if value or name == "name" else None
            if problem is not None:
                raise InvalidValue(name, problem)
        if len(self.address) > MAX_ADDRESS:
            raise InvalidValue("address", f"at most {MAX_ADDRESS} characters, got {len(self.address):,}")
        for line in self.address.split("\n"):
            problem = text_problem(line, MAX_ADDRESS) if line.strip() else None
            if problem is not None:
                raise InvalidValue("address", problem)
        parse_locale(self.locale)

    @classmethod
    def unnamed(cls, tenant_id: str) -> TenantProfile:
        """A tenant without a profile: its id is its name."""
        return cls(tenant_id, tenant_id)


@dataclass(frozen=True, slots=True)
class Customer:
    """Who the invoice is for. The subscription is the customer the ledger knows (it holds no
    customer name or address); ``timezone`` is its billing calendar's, in which dates are printed."""

    subscription_id: str
    timezone: str = "UTC"
    region_code: str | None = None
    name: str = ""
    address: str = ""


@dataclass(frozen=True, slots=True)
class PrintedLine:
    """One charge line as printed; ``details`` are its exact breakdown (tiers, proration);
    ``tiered`` when tiers price it (graduated or volume: no one unit price)."""

    type: str
    description: str
    quantity: str
    unit_price: str
    amount: str
    details: tuple[str, ...] = ()
    tiered: bool = False


@dataclass(frozen=True, slots=True)
class PrintedTax:
    """One tax of the breakdown: its name, rate, whether it is included in the prices, and amount."""

    name: str
    rate: str
    inclusive: bool
    region_code: str
    amount: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.rate}" + (" (included)" if self.inclusive else "")


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    address_lines: tuple[str, ...] = ()
    tax_id: str = ""


@dataclass(frozen=True, slots=True)
class PrintableInvoice:
    """Everything an invoice document shows, as text: what a template lays out."""

    invoice_number: str
    status: str
    currency_code: str
    locale: str
    seller: Party
    customer: Party
    subscription_id: str
    plan_code: str
    issue_date: str
    due_date: str | None
    period_start: str
    period_end: str
    lines: tuple[PrintedLine, ...]
    discounts: tuple[PrintedLine, ...]
    taxes: tuple[PrintedTax, ...]
    subtotal: str
    discount_total: str
    tax_total: str
    total: str
    credits_applied: str
    amount_paid: str
    amount_due: str
    tax_inclusive: bool = False
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


class MoneyText:
    """Amounts of one locale: the currency's symbol or code, grouping and decimal signs from CLDR,
    the digits from our exponent table (CLDR gives IDR two; we bill it in whole rupiah)."""

    def __init__(self, locale: str) -> None:
        self.locale = parse_locale(locale)
        self._pattern = self.locale.currency_formats["standard"]

    def _format(self, value: Decimal, currency: str, exact: bool) -> str:
        digits = currency_exponent(currency)
        pattern = replace_precision(self._pattern, digits)
        formatted = format_currency(
            value, currency, format=pattern, locale=self.locale, currency_digits=False, decimal_quantization=exact
        )
        return _LETTER_THEN_DIGIT.sub("\u00a0", str(formatted))

    def money(self, amount: Money) -> str:
        """Integer minor units, exact, with exactly the currency's minor digits."""
        return self._format(minor_to_major(amount.amount, amount.currency), amount.currency, True)

    def price(self, value: Decimal, currency: str) -> str:
        """A unit price: every digit it has, at least the currency's minor digits."""
        return self._format(value, currency, False)

    def number(self, value: Decimal) -> str:
        """A quantity with every digit it has, grouped as the locale groups."""
        return str(babel_decimal(value, locale=self.locale, decimal_quantization=False))


def replace_precision(pattern: NumberPattern, digits: int) -> NumberPattern:
    """A copy of a Babel number pattern with exactly ``digits`` fraction digits."""
    changed = copy(pattern)
    changed.frac_prec = (digits, digits)
    return changed


def _local_date(instant: datetime, timezone: str) -> date:
    return instant.astimezone(zone(timezone)).date()


def _period_texts(invoice: Invoice, customer: Customer, locale: Locale) -> tuple[str, str]:
    """The period's first and last day in the subscription's calendar; a period cut inside a day
    (a plan change, a cancellation) prints its instants instead. The end is exclusive, so a period
    ending at local midnight prints the day before as its last."""
    tz = zone(customer.timezone)
    start, end = invoice.period.start.astimezone(tz), invoice.period.end.astimezone(tz)
    if start.time() == time(0) and end.time() == time(0):
        last = end.date() - timedelta(days=1) if end.date() > start.date() else end.date()
        return format_date(start.date(), "medium", locale), format_date(last, "medium", locale)
    return _instant_text(start, locale), _instant_text(end, locale)


def _instant_text(instant: datetime, locale: Locale) -> str:
    """A local date and minute, and the zone's abbreviation (``15 Jan 2026 14:30 WIB``)."""
    zone_name = instant.tzname() or ""
    return f"{format_date(instant.date(), 'medium', locale)} {format_time(instant, 'HH:mm', locale=locale)} {zone_name}"


def _details(line: InvoiceLineItem, text: MoneyText, currency: str) -> tuple[str, ...]:
    """A usage line's exact breakdown (included units, each tier) and a base fee's proration."""
    meta = line.metadata
    details = []
    if meta.get("included_units") not in (None, "0"):
        details.append(f"{text.number(Decimal(meta['included_units']))} included")
    tier = 1
    while f"tier_{tier}_units" in meta:
        units, price = Decimal(meta[f"tier_{tier}_units"]), Decimal(meta[f"tier_{tier}_unit_price"])
        fee = Decimal(meta.get(f"tier_{tier}_flat_fee", "0"))
        detail = f"tier {tier}: {text.number(units)} × {text.price(price, currency)}"
        if fee:
            detail += f" + {text.price(fee, currency)}"
        details.append(detail)
        tier += 1
    if "proration" in meta:
        details.append(f"prorated {meta['proration']} of the period")
    if line.type == LineType.ADJUSTMENT and "billed_quantity" in meta:
        now, before = text.number(Decimal(meta["quantity"])), text.number(Decimal(meta["billed_quantity"]))
        details.append(f"{now} now, {before} billed before")
    return tuple(details)


def _tax(line: InvoiceLineItem, text: MoneyText) -> PrintedTax:
    """A TAX line as the engine writes it (tax.py): ``NAME RATE%[ included]``, rate and region in
    its metadata."""
    rate = line.metadata.get("rate_percent") or format_decimal(line.unit_price or Decimal(0))
    inclusive = line.metadata.get("inclusive") == "true"
    name = line.description.removesuffix(" included").removesuffix(f" {rate}%")
    rate_text = f"{text.number(Decimal(rate))}%"
    return PrintedTax(name, rate_text, inclusive, line.metadata.get("region_code", ""), text.money(line.amount))


def _charge(line: InvoiceLineItem, text: MoneyText, currency: str) -> PrintedLine:
    return PrintedLine(
        str(line.type),
        line.description,
        "" if line.quantity is None else text.number(line.quantity),
        "" if line.unit_price is None else text.price(line.unit_price, currency),
        text.money(line.amount),
        _details(line, text, currency),
        "tier_1_units" in line.metadata,
    )


def printable_invoice(
    invoice: Invoice,
    seller: TenantProfile,
    customer: Customer,
    due_at: datetime | None = None,
) -> PrintableInvoice:
    """The figures of a finalized invoice, in the seller's locale and the customer's calendar.
    A draft (no number, no issue instant) is refused: only what was sent to a customer prints."""
    if invoice.invoice_number is None or invoice.issued_at is None:
        raise InvalidValue("invoice_number", "only a finalized invoice (numbered and issued) has a PDF")
    text = MoneyText(seller.locale)
    currency = invoice.currency_code
    charges = tuple(_charge(line, text, currency) for line in invoice.line_items if line.type in SUBTOTAL_TYPES)
    discounts = tuple(_charge(line, text, currency) for line in invoice.line_items if line.type == LineType.DISCOUNT)
    taxes = tuple(_tax(line, text) for line in invoice.line_items if line.type == LineType.TAX)
    start, end = _period_texts(invoice, customer, text.locale)
    customer_lines = [*(customer.address.split("\n") if customer.address else ())]
    if customer.region_code:
        customer_lines.append(f"Region {customer.region_code}")
    return PrintableInvoice(
        invoice_number=invoice.invoice_number,
        status=str(invoice.status),
        currency_code=currency,
        locale=str(text.locale),
        seller=Party(seller.name, tuple(seller.address.split("\n")) if seller.address else (), seller.tax_id),
        customer=Party(customer.name or customer.subscription_id, tuple(customer_lines)),
        subscription_id=customer.subscription_id,
        plan_code=invoice.plan_code,
        issue_date=format_date(_local_date(invoice.issued_at, customer.timezone), "medium", text.locale),
        due_date=None if due_at is None else format_date(_local_date(due_at, customer.timezone), "medium", text.locale),
        period_start=start,
        period_end=end,
        lines=charges,
        discounts=discounts,
        taxes=taxes,
        subtotal=text.money(invoice.subtotal),
        discount_total=text.money(Money(-invoice.discount_total.amount, currency)),
        tax_total=text.money(invoice.tax_total),
        total=text.money(invoice.total),
        credits_applied=text.money(Money(-invoice.credits_applied.amount, currency)),
        amount_paid=text.money(Money(-invoice.amount_paid.amount, currency)),
        amount_due=text.money(invoice.amount_due),
        tax_inclusive=any(tax.inclusive for tax in taxes),
        metadata=dict(invoice.metadata),
    )
