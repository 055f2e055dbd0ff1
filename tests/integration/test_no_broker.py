"""A command that needs Kafka and finds no broker says so, and how to start one: status 1, one
line, no traceback (issue 15's first-meeting errors; ``billing worker`` and ``billing dlq`` have
their own tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from invoicing.ledger.embedded import stop_embedded_database

pytestmark = pytest.mark.integration

CASE = Path(__file__).parents[1] / "scenarios" / "cases" / "01_usd_sub_cent_rounding.yaml"


@pytest.mark.parametrize(
    "command",
    [
        ("invoicer", "--data-dir", "{tmp}/ledger"),
        ("relay", "--data-dir", "{tmp}/ledger"),
        ("simulate", str(CASE), "--via", "kafka", "--data-dir", "{tmp}/sim"),
        ("rebuild-usage", "--catalog", str(CASE), "--data-dir", "{tmp}/sink"),
    ],
    ids=lambda c: c[0],
)
def test_no_broker_is_one_line_naming_the_address_and_what_to_do(command: tuple[str, ...], tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in command]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "billing.cli", *args, "--bootstrap", "127.0.0.1:1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:  # the embedded PostgreSQL a command started outlives it (the next command reuses it)
        for data_dir in ("ledger", "sim"):
            stop_embedded_database(tmp_path / data_dir / "postgres")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "no Kafka broker answered at 127.0.0.1:1" in errors[0], done.stderr
    assert "ops/kafka.py start" in errors[0]
    assert "Traceback" not in done.stderr
