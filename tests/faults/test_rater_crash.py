"""The whole loop (``billing worker``) over six months of 40 subscriptions on a clock the test
sets, while the rater is SIGKILLed at random moments (right after the clock moves, while it closes
periods and publishes them) and the loop restarts it: every (subscription, period) is invoiced
exactly once, late usage of a closed month lands on the next invoice, and the invoices equal
``billing simulate``'s for the same scenario (numbers: the same gapless set)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from sqlalchemy import create_engine

from billing.clock import FileClock
from billing.simulate import Simulation, load_scenario
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from schemas import avro_codec
from streams.ingest.producer import TUNING
from streams.kafka import messages
from streams.kafka.topics import PIPELINE_TOPICS, USAGE_EVENTS, ensure_topics
from streams.memory import MemoryUsageStore
from tests.waiting import wait_until

pytestmark = pytest.mark.faults

SUBSCRIPTIONS = 40
MONTHS = 6
START = datetime(2026, 1, 1, tzinfo=UTC)


def _scenario_file(path: Path, rng: random.Random) -> Path:
    """Monthly subscriptions with usage every month, and some usage of a month arriving after it
    was invoiced (on the next month's first day)."""
    events = []
    for n in range(SUBSCRIPTIONS):
        sub = f"s{n:03d}"
        for month in range(MONTHS):
            begin = START.replace(month=month + 1)
            for k in range(rng.randint(1, 4)):
                recorded = begin + timedelta(days=rng.randint(0, 27), hours=rng.randint(0, 23))
                event = {
                    "subscription_id": sub,
                    "metric_code": "api_calls",
                    "value": rng.randint(1, 9),
                    "recorded_at": recorded.isoformat(),
                    "idempotency_key": f"{sub}-{month}-{k}",
                }
                if rng.random() < 0.1 and month + 1 < MONTHS:  # late: arrives after the month closed
                    event["arrives_at"] = START.replace(month=month + 2, day=2).isoformat()
                events.append(event)
    scenario = {
        "tenant_id": "t1",
        "metrics": [{"code": "api_calls", "aggregation": "SUM"}],
        "plans": [
            {
                "code": "m",
                "currency_code": "USD",
                "base_price": "5.00",
                "meters": [
                    {
                        "metric_code": "api_calls",
                        "pricing_model": "PER_UNIT",
                        "unit_price": "0.25",
                        "included_units": "3",
                    }
                ],
            }
        ],
        "tax_rules": [{"region_code": "ID", "name": "PPN", "rate_percent": "11", "is_default": True}],
        "subscriptions": [
            {"id": f"s{n:03d}", "plan_code": "m", "start_at": START.isoformat()} for n in range(SUBSCRIPTIONS)
        ],
        "events": events,
        "run_until": START.replace(month=MONTHS + 1).isoformat(),
    }
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def _rater_pid(prefix: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rater" in command and prefix.encode() in command:
            return int(entry.name)
    return None


def _wait_for_rater(prefix: str) -> int:
    return wait_until(lambda: _rater_pid(prefix), 120, "the loop to restart the rater", interval=0.2)


def _wait_for_invoices(
    ledger: PostgresLedger, due: int, instant: datetime, loop: subprocess.Popen[bytes], log: Path, data: Path
) -> None:
    """Until ``due`` invoices are in the ledger, while the loop runs."""

    def loop_alive() -> None:
        assert loop.poll() is None, log.read_text()

    wait_until(
        lambda: _count(ledger) >= due,
        300,
        f"{due} invoices by {instant}",
        interval=0.3,
        step=loop_alive,
        diagnose=lambda: f"{_count(ledger)} of {due} invoices\n{_logs(data)}",
    )


def test_sigkilled_rater_hands_every_period_over_once(kafka_broker: Any, pg_url: str, tmp_path: Path) -> None:
    rng = random.Random(20261127)
    case = _scenario_file(tmp_path / "scenario.yaml", rng)
    scenario = load_scenario(case)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    assert len(expected) == SUBSCRIPTIONS * MONTHS

    prefix = f"crash-{uuid.uuid4().hex[:10]}."
    bootstrap = kafka_broker.bootstrap
    env = {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    env.pop("CLICKHOUSE_URL", None)
    ensure_topics(bootstrap, 2, topics=[prefix + t for t in PIPELINE_TOPICS])
    applied = subprocess.run(
        [sys.executable, "-m", "billing.cli", "catalog", "apply", str(case)], env=env, capture_output=True, text=True
    )
    assert applied.returncode == 0, applied.stderr

    clock = tmp_path / "now"
    FileClock.set(clock, START)
    data = tmp_path / "loop"
    log = tmp_path / "worker.log"
    command = [
        *(sys.executable, "-m", "billing.cli", "worker", "--topic-prefix", prefix, "--data-dir", str(data)),
        *("--partitions", "2", "--store", "memory", "--retention-days", "36500", "--clock-file", str(clock)),
    ]
    loop = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    engine = create_engine(pg_url)
    ledger = PostgresLedger(engine)
    producer = Producer({"bootstrap.servers": bootstrap, **TUNING})  # murmur2, as the worker checks
    kills = 0
    try:
        instants = sorted({e.arrives_at for e in scenario.events} | {i.issued_at for i in expected if i.issued_at})
        for instant in instants:
            for event in (e for e in scenario.events if e.arrives_at == instant):
                value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(event.usage_event()))
                producer.produce(prefix + USAGE_EVENTS, key=event.subscription_id.encode(), value=value)
            assert producer.flush(30) == 0
            FileClock.set(clock, instant)
            due = sum(1 for i in expected if i.issued_at is not None and i.issued_at <= instant)
            if due and instant.day == 1 and instant.hour == 0:
                pid = _wait_for_rater(prefix)  # the loop may still be restarting it after the last kill
                time.sleep(rng.uniform(0.0, 3.0))  # somewhere in its closing of 40 periods
                os.kill(pid, signal.SIGKILL)
                kills += 1
            _wait_for_invoices(ledger, due, instant, loop, log, data)
    finally:
        loop.send_signal(signal.SIGTERM)
        try:
            loop.wait(90)
        except subprocess.TimeoutExpired:
            loop.kill()
            loop.wait()

    assert kills >= 4, "the rater was not killed often enough for the test to mean anything"
    got = _invoices(ledger)
    engine.dispose()
    assert len(got) == len(expected)
    assert len({(i.subscription_id, i.period.start) for i in got}) == len(got), "a period invoiced twice"
    differ = [
        (w["subscription_id"], w["billing_period_start"], g["total"], w["total"])
        for g, w in zip(
            [_unnumbered(i) for i in sorted(got, key=_key)],
            [_unnumbered(i) for i in sorted(expected, key=_key)],
            strict=True,
        )
        if g != w
    ]
    assert not differ, f"{len(differ)} invoices differ (subscription, period, got total, simulate total): {differ[:20]}"
    assert sorted(str(i.invoice_number) for i in got) == sorted(str(i.invoice_number) for i in expected)


def _key(invoice: Any) -> tuple[str, datetime]:
    return (invoice.subscription_id, invoice.period.start)


def _unnumbered(invoice: Any) -> dict[str, Any]:
    rendered = invoice_to_dict(invoice)
    rendered.pop("invoice_number")
    return rendered


def _invoices(ledger: PostgresLedger) -> list[Any]:
    with ledger.session() as session:
        return session.list_invoices("t1")


def _count(ledger: PostgresLedger) -> int:
    return len(_invoices(ledger))


def _logs(data: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted((data / "logs").glob("*.log")))
