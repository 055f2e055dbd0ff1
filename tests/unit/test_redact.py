"""Nothing prints a password: URLs are redacted before they are shown (issue #15.3)."""

from __future__ import annotations

import pytest

from billing.database import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://billing:s3cret@db:5432/billing", "postgresql+psycopg://billing:***@db:5432/billing"),
        ("https://default:p%40ss@clickhouse:8443/billing", "https://default:***@clickhouse:8443/billing"),
        (
            "postgresql+psycopg://postgres:@/postgres?host=%2Ftmp%2Fpg",
            "postgresql+psycopg://postgres:@/postgres?host=%2Ftmp%2Fpg",
        ),
        ("http://clickhouse:8123", "http://clickhouse:8123"),
    ],
)
def test_a_password_never_shows(url: str, shown: str) -> None:
    assert redact(url) == shown
