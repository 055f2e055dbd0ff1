"""The ledger on a real PostgreSQL: migrations match the tables and rerun as no-ops (also when
several processes start at once), concurrent finalizations of one tenant number their invoices
without a gap or a duplicate, concurrent spending never overdraws a balance, and the embedded
server outlives its process until stopped, keeping its data."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from invoicing.engine.compose import finalize
from invoicing.engine.credit import CreditNote, CreditType
from invoicing.engine.subscriptions import Lifecycle, Subscription
from invoicing.ledger.embedded import embedded_database_url, stop_embedded_database
from invoicing.ledger.postgres import PostgresLedger, migrate
from invoicing.ledger.tables import metadata
from rating.catalog import Plan
from rating.errors import InvalidValue
from rating.money import Money
from rating.periods import BillingInterval
from tests.integration.test_ledger_batch import day_draft

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return revision


def test_migrations_create_exactly_the_tables_and_rerun_as_a_no_op(pg_url: str) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as connection:  # data a rerun must not touch
        connection.execute(text("INSERT INTO invoice_sequences (tenant_id, last_number) VALUES ('t1', 41)"))
    migrate(pg_url)  # the fixture migrated once already
    migrate(pg_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
        assert connection.execute(text("SELECT last_number FROM invoice_sequences")).scalar_one() == 41
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert diff == []
    assert _revision(pg_url) == "0011"
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_the_revision_history_is_backfilled_with_each_subscription_as_it_stands(pg_url: str) -> None:
    engine = create_engine(pg_url)
    ledger = PostgresLedger(engine)
    start, change_at = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC)
    changed = Lifecycle(
        effective_at=change_at, previous_plan_code="m", previous_plan_version=1, plan_changed_at=change_at
    )
    with ledger.session() as s:
        s.save_plan("t1", Plan("m", "USD", base_price=Decimal("10")))
        s.save_plan("t1", Plan("w", "USD", base_price=Decimal("3"), billing_interval=BillingInterval.WEEK))
        s.save_subscription(Subscription("s1", "t1", "m", start))
        s.save_subscription(Subscription("s2", "t1", "m", start))
    with ledger.session() as s:
        current = s.save_subscription(Subscription("s1", "t1", "w", start), lifecycle=changed)
    migrate(pg_url, "0009")
    assert "subscription_revisions" not in inspect(engine).get_table_names()
    migrate(pg_url)
    with engine.connect() as connection:
        updated = connection.execute(text("SELECT updated_at FROM subscriptions WHERE id = 's1'")).scalar_one()
    with ledger.session() as s:
        (only,) = s.subscription_revisions("s1")
        assert [r.record.revision for r in s.subscription_revisions("s2")] == [1]
    engine.dispose()
    # what the backfill cannot know: revision 1 (on plan m) is gone; the current one, as it stands
    assert (only.record, only.recorded_at) == (current, updated)


def test_processes_starting_together_migrate_once(pg_server_url: str, pg_url: str) -> None:
    name = f"{make_url(pg_url).database}_fresh"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    fresh = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    # real processes, as workers and a sink starting together would be (Alembic keeps per-process state)
    script = "import sys; from invoicing.ledger.postgres import migrate; migrate(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, fresh], stderr=subprocess.PIPE, text=True) for _ in range(6)
    ]
    errors = [p.stderr.read() if p.stderr else "" for p in processes]
    codes = [p.wait() for p in processes]
    try:
        assert codes == [0] * 6, errors
        assert _revision(fresh) == "0011"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


ROWS_AT_0009 = (
    "INSERT INTO plans (tenant_id, code, version, snapshot) VALUES ('t1', 'pro', 1, '{}'), ('t2', 'pro', 1, '{}')",
    "INSERT INTO subscriptions (id, tenant_id, plan_code, plan_version, start_at, timezone, allow_overage_billing,"
    " trial_days, has_payment_method, status, revision) VALUES"
    " ('s1', 't1', 'pro', 1, now(), 'UTC', false, 0, false, 'ACTIVE', 1),"
    " ('s2', 't2', 'pro', 1, now(), 'UTC', false, 0, false, 'ACTIVE', 1)",
    "INSERT INTO invoices (tenant_id, subscription_id, billing_period_start, billing_period_end, currency_code,"
    " status, invoice_number, plan_code, subtotal, discount_total, tax_total, total, credits_applied, amount_paid,"
    " amount_due, metadata) VALUES"
    " ('t2', 's2', now(), now(), 'USD', 'OPEN', 'INV-1', 'pro', 1, 0, 0, 1, 0, 0, 1, '{}'),"
    " ('t3', 's3', now(), now(), 'USD', 'OPEN', 'INV-1', 'pro', 1, 0, 0, 1, 0, 0, 1, '{}')",
    # s1's balance note, s2's adjustment of its INV-1 (t3 has an INV-1 too, of another subscription),
    # and a note of s3, a subscription the catalog no longer has but whose invoice says t3
    "INSERT INTO credit_notes (subscription_id, type, amount, currency_code, created_at, reason, invoice_number)"
    " VALUES ('s1', 'BALANCE', 5, 'USD', now(), '', NULL), ('s2', 'ADJUSTMENT', 1, 'USD', now(), '', 'INV-1'),"
    " ('s3', 'BALANCE', 7, 'USD', now(), '', NULL)",
)


def test_credit_notes_take_their_tenant_from_their_invoice_or_subscription(pg_server_url: str, pg_url: str) -> None:
    """Migration 0011 on notes stored before it: each gets its own tenant; a note no invoice nor
    subscription names a tenant for stops the upgrade, naming it, and nothing changes."""
    name = f"{make_url(pg_url).database}_at_0009"
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        migrate(url, "0009")
        with engine.begin() as connection:
            for statement in ROWS_AT_0009:
                connection.execute(text(statement))
            orphan = connection.execute(
                text(
                    "INSERT INTO credit_notes (subscription_id, type, amount, currency_code, created_at, reason)"
                    " VALUES ('gone', 'BALANCE', 9, 'USD', now(), '') RETURNING id"
                )
            ).scalar_one()
        with pytest.raises(RuntimeError, match=f"credit_notes.tenant_id: no tenant found for notes {orphan} "):
            migrate(url)
        assert _revision(url) == "0009"
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM credit_notes WHERE id = :id"), {"id": orphan})
        migrate(url)
        assert _revision(url) == "0011"
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT subscription_id, tenant_id FROM credit_notes ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [("s1", "t1"), ("s2", "t2"), ("s3", "t3")]
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_concurrent_finalizations_number_invoices_without_gap_or_duplicate(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=8)
    ledger = PostgresLedger(engine)
    workers, rounds = 8, 25
    committed: list[str] = []
    lock = threading.Lock()

    def finalize_many(worker: int) -> None:
        for n in range(rounds):
            start = T0 + timedelta(days=n)
            draft = day_draft(f"s{worker}", start)
            try:
                with ledger.session() as s:
                    invoice = finalize(draft, s.next_invoice_sequence("t1"), start)
                    s.add_invoice(invoice)
                    if (worker + n) % 5 == 0:
                        raise RuntimeError("crash after numbering, before commit")
                with lock:
                    committed.append(invoice.invoice_number or "")
            except RuntimeError:
                pass

    threads = [threading.Thread(target=finalize_many, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with ledger.session() as s:
        stored = [i.invoice_number for i in s.list_invoices("t1")]
    engine.dispose()
    crashed = sum(1 for w in range(workers) for n in range(rounds) if (w + n) % 5 == 0)
    expected = [f"INV-2026-{n:06d}" for n in range(1, workers * rounds - crashed + 1)]
    assert sorted(committed) == expected
    assert sorted(s or "" for s in stored) == expected


def test_a_balance_spent_by_two_finalizations_at_once_is_never_overdrawn(pg_url: str) -> None:
    engine = create_engine(pg_url, pool_size=4)
    ledger = PostgresLedger(engine)
    with ledger.session() as s:
        s.add_credit_note("t1", CreditNote("s1", CreditType.BALANCE, Money(700, "USD"), T0))
    outcome: list[str] = []
    second_done = threading.Event()

    def second() -> None:
        try:
            with ledger.session() as s:
                s.use_credit("s1", Money(500, "USD"), "INV-2026-000002")
            outcome.append("spent")
        except InvalidValue:
            outcome.append("refused")
        second_done.set()

    with ledger.session() as s:
        assert s.credit_balance("s1", "USD") == Money(700, "USD")
        s.use_credit("s1", Money(500, "USD"), "INV-2026-000001")
        thread = threading.Thread(target=second)
        thread.start()
        # the second finalization waits for this one instead of spending the same 700
        assert not second_done.wait(0.5)
    thread.join()
    with ledger.session() as s:
        balance = s.credit_balance("s1", "USD")
    engine.dispose()
    assert outcome == ["refused"]
    assert balance == Money(200, "USD")


def test_the_embedded_server_outlives_its_handle_until_stopped_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    url = embedded_database_url(data_dir)
    try:
        assert url.startswith("postgresql+psycopg://postgres:@/postgres?host=")
        migrate(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO invoice_sequences VALUES ('t1', 7)"))
        engine.dispose()
        assert embedded_database_url(data_dir) == url  # reused, not restarted
        assert stop_embedded_database(data_dir)
        assert not stop_embedded_database(data_dir)
        with pytest.raises(Exception):  # noqa: B017 - any connection error: nothing listens
            probe = create_engine(url)
            try:
                with probe.connect():
                    pass
            finally:
                probe.dispose()
        started = time.monotonic()
        url = embedded_database_url(data_dir)
        assert time.monotonic() - started < 30
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT last_number FROM invoice_sequences")).scalar_one() == 7
        engine.dispose()
    finally:
        stop_embedded_database(data_dir)


STARTER = """
import sys, tempfile
from pathlib import Path
from invoicing.ledger.embedded import embedded_database_url
from pgserver.utils import PostmasterInfo

def start(data_dir):
    embedded_database_url(data_dir)
    print(PostmasterInfo.read_from_pgdata(data_dir.resolve()).pid, flush=True)

if sys.argv[1] == "temporary":
    with tempfile.TemporaryDirectory() as tmp:
        start(Path(tmp) / "pg")
else:
    start(Path(sys.argv[1]))
"""


def _postmaster_after_exit(where: str) -> psutil.Process | None:
    """Start a server from a process that then exits; its postmaster, if still running after that."""
    done = subprocess.run([sys.executable, "-c", STARTER, where], capture_output=True, text=True, check=True)
    pid = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 15
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        if where != "temporary":
            return psutil.Process(pid)
        time.sleep(0.1)
    return psutil.Process(pid) if psutil.pid_exists(pid) else None


def test_the_embedded_server_outlives_the_process_that_started_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    try:
        postmaster = _postmaster_after_exit(str(data_dir))
        assert postmaster is not None and postmaster.is_running()
    finally:
        assert stop_embedded_database(data_dir)


def test_an_embedded_server_in_a_deleted_temporary_directory_does_not_outlive_its_process() -> None:
    assert _postmaster_after_exit("temporary") is None
