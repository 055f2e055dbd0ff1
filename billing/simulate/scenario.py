"""A scenario (design section 5) as frozen values: what ``billing simulate`` runs once a file was
read (``billing/simulate/scenario_file.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from invoicing.engine.credit import CreditType
from invoicing.engine.discount import Coupon
from invoicing.engine.lifecycle import PaymentTerms
from invoicing.engine.subscriptions import Subscription
from invoicing.engine.tax import TaxRule
from rating.catalog import Metric, Plan
from rating.periods import epoch_ms
from streams.operators.records import UsageEvent


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """A usage event of a scenario file. ``value`` is the wire's double; read from a file's text it
    carries the decimal written exactly (``decimal_from_double`` gives it back), or the file was refused."""

    id: str
    subscription_id: str
    metric_code: str
    value: float
    recorded_at: datetime
    arrives_at: datetime
    idempotency_key: str
    metadata: Mapping[str, str]
    tenant_id: str

    def usage_event(self) -> UsageEvent:
        """The event as a producer sends it (the pipeline's input)."""
        return UsageEvent(
            self.id,
            self.tenant_id,
            self.subscription_id,
            self.metric_code,
            self.value,
            epoch_ms(self.recorded_at),
            self.idempotency_key,
            self.metadata,
        )


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime
    type: str
    subscription_id: str
    plan_code: str | None = None
    amount: Decimal | None = None
    credit_type: CreditType = CreditType.BALANCE
    at_period_end: bool = False
    reason: str = ""
    token: str | None = None  # attach_payment_method: the DUMMY token (billing/payments/providers/dummy.py)


ACTIONS = ("change_plan", "credit_note", "cancel", "attach_payment_method")


@dataclass(frozen=True, slots=True)
class Scenario:
    tenant_id: str
    metrics: tuple[Metric, ...]
    plans: tuple[Plan, ...]
    tax_rules: tuple[TaxRule, ...]
    coupons: tuple[Coupon, ...]
    subscriptions: tuple[Subscription, ...]
    events: tuple[ScenarioEvent, ...]
    actions: tuple[Action, ...]
    run_until: datetime
    grace_period: timedelta = timedelta(0)
    payment_terms: PaymentTerms | None = None
    """Stated in the file; payments are simulated when it is, or when an action attaches a method."""

    @property
    def simulates_payments(self) -> bool:
        return self.payment_terms is not None or any(a.type == "attach_payment_method" for a in self.actions)

    def plan(self, code: str) -> Plan:
        return next(p for p in self.plans if p.code == code)
