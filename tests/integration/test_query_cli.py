"""``billing query`` as a user runs it, on the embedded stores of a simulated run: read-only
unless ``--write`` (issue #15.3), a refused query is one line and status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from invoicing.ledger.embedded import stop_embedded_database

CASE = Path(__file__).parents[1] / "scenarios" / "cases" / "01_usd_sub_cent_rounding.yaml"


def billing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Stores filled by ``simulate --stores embedded`` (invoices in PostgreSQL, usage in chDB)."""
    directory = tmp_path_factory.mktemp("query")
    done = billing("simulate", str(CASE), "--stores", "embedded", "--data-dir", str(directory))
    assert done.returncode == 0, done.stderr
    yield directory
    stop_embedded_database(directory / "postgres")


def query(data_dir: Path, store: str, sql: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return billing("query", store, sql, "--data-dir", str(data_dir), "--json", *flags)


def refused(done: subprocess.CompletedProcess[str], reason: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: sql: ") and reason in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr


def invoice_count(data_dir: Path) -> int:
    done = query(data_dir, "postgres", "SELECT count(*) AS n FROM invoices")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split('"n": ')[1].split("}")[0])


def test_postgres_reads_and_refuses_writes_programs_and_second_statements(data_dir: Path, tmp_path: Path) -> None:
    invoices = invoice_count(data_dir)
    assert invoices > 0
    refused(query(data_dir, "postgres", "DELETE FROM invoices"), "read-only transaction")
    refused(query(data_dir, "postgres", "SELECT 1; COMMIT; DELETE FROM invoices"), "multiple commands")
    marker = tmp_path / "ran"
    refused(query(data_dir, "postgres", f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'"), "permission denied")
    assert not marker.exists()
    refused(query(data_dir, "postgres", "SELEC 1"), "syntax error")
    assert invoice_count(data_dir) == invoices


def test_postgres_write_needs_the_flag(data_dir: Path) -> None:
    created = query(data_dir, "postgres", "CREATE TABLE scratch (n int); INSERT INTO scratch VALUES (7)", "--write")
    assert created.returncode == 0, created.stderr
    done = query(data_dir, "postgres", "SELECT n FROM scratch")
    assert done.returncode == 0 and '"n": 7' in done.stdout, done.stderr


def test_clickhouse_reads_and_refuses_writes_and_setting_changes(data_dir: Path) -> None:
    count = "SELECT count() AS n FROM billing.usage_events"
    before = query(data_dir, "clickhouse", count)
    assert before.returncode == 0 and '"n": ' in before.stdout, before.stderr
    refused(query(data_dir, "clickhouse", "INSERT INTO billing.dead_letters (reason) VALUES ('x')"), "readonly")
    refused(query(data_dir, "clickhouse", "SELECT 1 SETTINGS readonly = 0"), "readonly")
    refused(query(data_dir, "clickhouse", "DROP TABLE billing.usage_events"), "readonly")
    refused(query(data_dir, "clickhouse", "SELEC 1"), "Syntax error")
    assert query(data_dir, "clickhouse", count).stdout == before.stdout
