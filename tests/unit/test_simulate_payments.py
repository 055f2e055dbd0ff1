"""Scenario files state payments with ``payment_terms`` and ``attach_payment_method`` actions; a bad
one is refused naming its field, before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from billing.simulate import parse_scenario
from invoicing.engine.lifecycle import PaymentTerms
from rating.errors import BillingError

pytestmark = pytest.mark.unit


def scenario(**extra: Any) -> dict[str, Any]:
    return {
        "plans": [{"code": "m", "currency_code": "USD", "base_price": "10.00"}],
        "subscriptions": [{"id": "s", "plan_code": "m", "start_at": "2026-01-01T00:00:00Z"}],
        "run_until": "2026-02-01T00:00:00Z",
        **extra,
    }


def test_payment_terms_and_methods_are_read() -> None:
    attach = {"at": "2026-01-01T00:00:00Z", "type": "attach_payment_method", "subscription_id": "s", "token": "t"}
    read = parse_scenario(scenario(payment_terms={"net_days": 7, "retry_days": [2]}, actions=[attach]))
    assert read.payment_terms == PaymentTerms(7, (2,), None)
    assert (read.actions[0].token, read.simulates_payments) == ("t", True)
    assert not parse_scenario(scenario()).simulates_payments


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"payment_terms": {"retry_days": [3, 1]}}, r"payment_terms\.retry_days\[1\]: must grow"),
        ({"payment_terms": {"net_days": "x"}}, "payment_terms.net_days: expected a whole number"),
        ({"payment_terms": {"grace": 1}}, "payment_terms.grace: unknown key"),
        (
            {"actions": [{"at": "2026-01-01T00:00:00Z", "type": "attach_payment_method", "subscription_id": "s"}]},
            r"actions\[0\]\.token: is required",
        ),
    ],
)
def test_bad_payment_settings_name_the_field(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(BillingError, match=message):
        parse_scenario(scenario(**extra))
