"""Invoice numbers: one gapless sequence per tenant, assigned at finalization."""

from __future__ import annotations

from datetime import UTC, datetime


def invoice_number(sequence: int, finalized_at: datetime) -> str:
    """``INV-<year>-<sequence>``, e.g. ``INV-2026-000042``; the year is the finalization's (UTC)."""
    return f"INV-{finalized_at.astimezone(UTC).year}-{sequence:06d}"
