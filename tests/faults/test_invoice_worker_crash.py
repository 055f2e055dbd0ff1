"""10,000 final RatingResults through ``billing invoicer`` while it is SIGKILLed at random points
and restarted, and the embedded PostgreSQL is stopped and started again once mid-run: exactly one
invoice per (subscription, period), invoice numbers gapless 1..n per tenant, one
``invoice.finalized`` outbox row per invoice, and every invoice what InvoiceService computes
directly from the same inputs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from billing.rate.messages import write_rating_result
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger import tables as t
from invoicing.ledger.embedded import embedded_database_url, stop_embedded_database
from invoicing.ledger.postgres import migrate
from streams.kafka.topics import RATING_DLQ, RATING_RESULTS, ensure_topics
from tests.integration.test_invoice_worker import cases, invoices_in, outbox_rows, produce, reference
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

PAIRS = 10_000
KILLS = 4


def start_worker(bootstrap: str, prefix: str, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    command = [sys.executable, "-m", "billing.cli", "invoicer", "--topic-prefix", prefix, "--log-level", "warning"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def test_kills_and_a_database_restart_lose_and_duplicate_nothing(kafka_broker: Any, tmp_path: Path) -> None:
    rng = random.Random(20261127)
    # four tenants, one of them with most subscriptions; late usage on some second periods
    all_cases = cases(tenants=1, subscriptions=3500, periods=2) + cases(3, 1000, 1, prefix="x")
    assert len(all_cases) == PAIRS
    # one memory ledger per subscription (its invoices depend on nothing else but the numbers,
    # which are compared apart), so the reference stays linear
    by_subscription: dict[str, list[Any]] = defaultdict(list)
    for case in all_cases:
        by_subscription[case.closed.subscription.id].append(case)
    expected = {
        (i.subscription_id, i.period.start): invoice_to_dict(i)
        for group in by_subscription.values()
        for i in reference(group)
    }

    data_dir = tmp_path / "pg"
    url = embedded_database_url(data_dir)
    migrate(url)
    prefix = f"crash{rng.randrange(10**6)}."
    ensure_topics(kafka_broker.bootstrap, 4, topics=[prefix + RATING_RESULTS, prefix + RATING_DLQ])
    produce(
        kafka_broker.bootstrap,
        prefix + RATING_RESULTS,
        [(c.closed.subscription.id, write_rating_result(c.rating())) for c in all_cases],
    )

    log = tmp_path / "invoicer.log"
    engine = create_engine(url, pool_pre_ping=True)

    def count() -> int:
        try:
            with engine.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(t.invoices)).scalar_one())
        except Exception:  # PostgreSQL is being restarted
            return -1

    def worker_alive() -> None:
        assert worker.poll() is None, log.read_text()[-3000:]

    def wait_for(invoices: int) -> None:
        """Until ``invoices`` are in, within the whole run's deadline."""
        wait_until(
            lambda: count() >= invoices,
            max(0.0, deadline - time.monotonic()),
            f"{invoices} invoices",
            interval=0.05,
            step=worker_alive,
            diagnose=lambda: f"stuck at {count()} invoices; see {log}",
        )

    # kill points: random, but mid-run whatever the machine's speed
    thresholds = sorted(rng.sample(range(300, PAIRS - 1500), KILLS))
    worker = start_worker(kafka_broker.bootstrap, prefix, url, log)
    started = time.monotonic()
    deadline = started + 200
    progress = []
    try:
        for kill, threshold in enumerate(thresholds):
            wait_for(threshold)
            time.sleep(rng.uniform(0, 0.5))
            if kill == 1:  # PostgreSQL goes away under a running worker, and comes back
                assert stop_embedded_database(data_dir)
                time.sleep(rng.uniform(1.0, 3.0))
                assert embedded_database_url(data_dir) == url
                time.sleep(rng.uniform(0.5, 2.0))
            progress.append(count())
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker = start_worker(kafka_broker.bootstrap, prefix, url, log)
        wait_for(PAIRS)
        time.sleep(3)  # anything processed twice would show up now
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        engine.dispose()
    print(f"invoices at each kill: {progress}; run took {time.monotonic() - started:.1f}s")
    assert max(progress) < PAIRS, "kills must land mid-run"
    assert "ledger unavailable, retrying" in log.read_text(), "the restart was to reach the worker"

    try:
        invoices = invoices_in(url)
        outbox = outbox_rows(url)
    finally:
        stop_embedded_database(data_dir)
    assert len(invoices) == PAIRS
    found = {(i.subscription_id, i.period.start): i for i in invoices}
    assert found.keys() == expected.keys()
    numbers: dict[str, list[int]] = defaultdict(list)
    for invoice in invoices:
        assert invoice.invoice_number is not None
        numbers[invoice.tenant_id].append(int(invoice.invoice_number.rsplit("-", 1)[1]))
    assert {tenant: sorted(n) for tenant, n in numbers.items()} == {
        tenant: list(range(1, len(n) + 1)) for tenant, n in numbers.items()
    }
    assert len(outbox) == PAIRS
    assert sorted(outbox) == sorted((i.subscription_id, i.invoice_number) for i in invoices)
    # numbers depend on the order tenants' subscriptions were consumed in across partitions;
    # everything else is the direct computation's
    for key, invoice in found.items():
        got, want = invoice_to_dict(invoice), dict(expected[key])
        got.pop("invoice_number")
        want.pop("invoice_number")
        assert got == want, key
