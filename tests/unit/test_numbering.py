"""Invoice numbers: INV-<year of finalization, UTC>-<6-digit sequence>."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from invoicing.engine.numbering import invoice_number

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("sequence", "at", "number"),
    [
        (1, datetime(2026, 2, 1, tzinfo=UTC), "INV-2026-000001"),
        (42, datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), "INV-2026-000042"),
        (999_999, datetime(2027, 1, 1, tzinfo=UTC), "INV-2027-999999"),
        (1_000_000, datetime(2027, 1, 1, tzinfo=UTC), "INV-2027-1000000"),  # widens, never wraps
        # 2027-01-01 06:00 in Jakarta is still 2026 in UTC: the year is the UTC one
        (7, datetime(2027, 1, 1, 6, tzinfo=timezone(timedelta(hours=7))), "INV-2026-000007"),
    ],
)
def test_invoice_number_format(sequence: int, at: datetime, number: str) -> None:
    assert invoice_number(sequence, at) == number
