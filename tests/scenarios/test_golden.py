"""Golden scenarios: hand-computed invoices for every rule of design section 4, run through the
real ``billing simulate`` command line; with payment methods, the attempts and dunning statuses too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.scenarios

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
INVOICE_KEYS = (
    "subscription_id",
    "invoice_number",
    "status",
    "currency_code",
    "billing_period_start",
    "billing_period_end",
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "credits_applied",
    "amount_due",
)
LINE_KEYS = ("type", "metric_code", "quantity", "unit_price", "amount")


def simulate(path: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "billing.cli", "simulate", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def comparable(invoice: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The invoice reduced to the keys the expectation names (descriptions and metadata aside)."""
    keys = [k for k in INVOICE_KEYS if k in expected]
    reduced = {k: invoice[k] for k in keys}
    if "line_items" in expected:
        reduced["line_items"] = [
            {k: line[k] for k in LINE_KEYS if k in want}
            for line, want in zip(invoice["line_items"], expected["line_items"], strict=False)
        ]
        if len(invoice["line_items"]) != len(expected["line_items"]):
            reduced["line_items"].append({"line count": len(invoice["line_items"])})
    return reduced


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden_scenario(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    output = simulate(case)
    expected = spec["expected"]
    got = [comparable(invoice, want) for invoice, want in zip(output["invoices"], expected, strict=False)]
    assert got == [dict(want) for want in expected]
    assert len(output["invoices"]) == len(expected)
    if "expected_dead_letters" in spec:
        letters = [{"idempotency_key": d["idempotency_key"], "reason": d["reason"]} for d in output["dead_letters"]]
        assert letters == spec["expected_dead_letters"]
    if "expected_payment_attempts" in spec:
        assert output["payment_attempts"] == spec["expected_payment_attempts"]
        assert output["subscription_statuses"] == spec["expected_subscription_statuses"]
    else:
        assert "payment_attempts" not in output  # scenarios without payment methods print what they did
