"""``smallbiznis.tax.v1.TaxService`` over a tenant's terms (``billing catalog apply`` sets them).

``CalculateTax`` chooses rules and computes amounts with the engine's own functions
(``rules_for``, ``tax_amount``), so its answer is the TAX lines an invoice of that subtotal would
carry: the region's active rules, else the default ones; exclusive ``subtotal × rate`` or, with
``tax_inclusive``, the part of the gross; each rounded half-up to the minor unit. A rule's ``id``
is ``<region_code>/<name>``; the terms keep no times, so ``created_at``/``updated_at`` are unset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billing.api import wire
from invoicing.engine.tax import TaxRule, rules_for, tax_amount
from invoicing.ports import Ledger
from rating.errors import InvalidValue
from rating.money import Money
from rating.numbers import format_decimal
from schemas.generated.smallbiznis.tax.v1 import tax_pb2, tax_pb2_grpc


def tax_rule_id(rule: TaxRule) -> str:
    return f"{rule.region_code}/{rule.name}"


def tax_rule_message(rule: TaxRule) -> tax_pb2.TaxRule:
    return tax_pb2.TaxRule(
        id=tax_rule_id(rule),
        region_code=rule.region_code,
        name=rule.name,
        rate_percent=format_decimal(rule.rate_percent),
        is_default=rule.is_default,
        is_active=rule.is_active,
    )


class TaxServicer(tax_pb2_grpc.TaxServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _rules(self, tenant: str) -> Sequence[TaxRule]:
        with self.ledger.session() as session:
            terms = session.get_terms(tenant)
        return () if terms is None else terms.terms.tax_rules

    def ListTaxRules(self, request: tax_pb2.ListTaxRulesRequest, context: Any) -> tax_pb2.ListTaxRulesResponse:
        """The tenant's rules in the order the engine applies them; of one region when it is given."""
        rules = self._rules(wire.tenant(context))
        chosen = [r for r in rules if not request.region_code or r.region_code == request.region_code]
        return tax_pb2.ListTaxRulesResponse(tax_rules=[tax_rule_message(rule) for rule in chosen])

    def CalculateTax(self, request: tax_pb2.TaxCalculationRequest, context: Any) -> tax_pb2.TaxCalculationResponse:
        tenant = wire.tenant(context)
        with wire.errors_as_status(context):
            if not request.HasField("subtotal"):
                raise InvalidValue("subtotal", "is required")
            try:
                subtotal = Money(request.subtotal.units, request.subtotal.currency_code)
            except InvalidValue as error:
                raise error.at("subtotal") from None
            if subtotal.amount < 0:
                raise InvalidValue("subtotal.units", f"must not be negative, got {subtotal.amount}")
        region = request.region or request.country or None
        rules = rules_for(region, self._rules(tenant))
        lines = [(rule, tax_amount(subtotal, rule, request.tax_inclusive)) for rule in rules]
        total = sum((amount for _, amount in lines), Money.zero(subtotal.currency))
        return tax_pb2.TaxCalculationResponse(
            tax=wire.money(total),
            lines=[
                tax_pb2.TaxLine(
                    tax_rule_id=tax_rule_id(rule),
                    name=rule.name,
                    rate_percent=format_decimal(rule.rate_percent),
                    amount=wire.money(amount),
                )
                for rule, amount in lines
            ],
        )
