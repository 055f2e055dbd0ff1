"""Credits reduce what is due, never below zero; the rest of the balance carries forward."""

from __future__ import annotations

import pytest

from invoicing.engine.credit import apply_credit
from rating.money import Money

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("balance", "due", "applied", "left"),
    [(1000, 4900, 1000, 0), (10_000, 4900, 4900, 5100), (0, 4900, 0, 0), (500, 0, 0, 500), (500, -200, 0, 500)],
)
def test_apply_credit(balance: int, due: int, applied: int, left: int) -> None:
    assert apply_credit(Money(balance, "USD"), Money(due, "USD")) == (Money(applied, "USD"), Money(left, "USD"))
