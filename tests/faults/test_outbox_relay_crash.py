"""The outbox relay under SIGKILL, on the real broker and PostgreSQL: killed at each step of a batch
(records produced but not committed; committed but not marked in PostgreSQL; marked), then
restarted as ``billing relay``; and two ``billing relay`` processes killed at random while writers
commit and roll back outbox rows. Every committed row is on its topic exactly once (read_committed),
in order per key, and nothing rolled back is; the aborted records a read_uncommitted reader still
sees prove the kills hit open transactions.

Size: OUTBOX_FAULT_KILLS (default 16) SIGKILLs of the active relay while rows are written.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from sqlalchemy import Engine, func, select

from billing.publish.relay import OUTBOX_ID_HEADER
from invoicing.ledger import tables
from invoicing.ledger.postgres import PostgresLedger
from invoicing.ports import OutboxMessage
from streams.ingest.partitioning import partition_of
from streams.kafka.topics import OUTBOX_PROGRESS
from tests.kafka_fixtures import Broker, read_committed
from tests.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("OUTBOX_FAULT_KILLS", "16"))
MAX_ROWS = 200_000
PARTITIONS = 3


@pytest.fixture
def relay_id() -> str:
    return uuid.uuid4().hex[:10]


def relay_env(pg_url: str, broker: Broker) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": pg_url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}


def relay_command(relay_id: str, *extra: str) -> list[str]:
    """``billing relay`` with this test's own transactional.id and progress topic."""
    command = [sys.executable, "-m", "billing.cli", "relay", "--transactional-id", f"relay-{relay_id}"]
    return [*command, "--progress-topic", f"{OUTBOX_PROGRESS}-{relay_id}", *extra]


def write(ledger: PostgresLedger, topic: str, key: str, n: int, rollback: bool = False) -> None:
    with ledger.session() as session:
        session.add_outbox(OutboxMessage(topic, key, {"key": key, "n": n}))
        if rollback:
            raise RuntimeError("rolled back")


def unpublished(engine: Engine) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(tables.outbox).where(tables.outbox.c.published_at.is_(None))
        return int(connection.execute(query).scalar_one())


def check_exactly_once(engine: Engine, bootstrap: str, topic: str) -> int:
    """Every committed row once, with its key and payload, on its key's partition, per key in id
    order; nothing else. The number of records."""
    with engine.connect() as connection:
        rows = {
            r.id: (r.key, r.payload) for r in connection.execute(select(tables.outbox).order_by(tables.outbox.c.id))
        }
    seen: list[int] = []
    by_key: dict[str, list[int]] = defaultdict(list)
    for message in read_committed(bootstrap, [topic]):
        outbox_id = int(dict(message.headers() or [])[OUTBOX_ID_HEADER])
        key = message.key().decode()
        assert (key, json.loads(message.value())) == rows[outbox_id]
        assert message.partition() == partition_of(key, PARTITIONS)
        seen.append(outbox_id)
        by_key[key].append(outbox_id)
    duplicates = sorted({i for i in seen if seen.count(i) > 1})
    assert not duplicates, f"published twice: {duplicates[:10]} ({len(duplicates)} in all)"
    missing = sorted(set(rows) - set(seen))
    assert not missing, f"never published: {missing[:10]} ({len(missing)} in all)"
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"key {key} out of order"
    return len(seen)


def read_uncommitted_count(bootstrap: str, topic: str) -> int:
    """Records of ``topic`` including those of aborted transactions."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "outbox-uncommitted",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
    pending, count = set(range(PARTITIONS)), 0
    try:
        while pending:
            message = consumer.poll(30)
            assert message is not None, "no end of topic"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                pending.discard(message.partition())
            else:
                count += 1
    finally:
        consumer.close()
    return count


KILL_AT_STEP = """
import os, signal, sys, threading
from sqlalchemy import create_engine
from billing.publish.relay import OutboxRelay, RelaySettings

url, bootstrap, relay_id, step = sys.argv[1:5]
batches = 0

def on_step(name, ids):
    global batches
    if name == step:
        batches += 1
        if batches == 2:
            os.kill(os.getpid(), signal.SIGKILL)

settings = RelaySettings(bootstrap, transactional_id="relay-" + relay_id, progress_topic="outbox.progress-" + relay_id,
                         batch_size=50, create_topics=())
OutboxRelay(create_engine(url), settings, on_step=on_step).run(threading.Event())
"""


@pytest.mark.parametrize(
    ("step", "unmarked", "recovered"), [("produced", 70, 0), ("committed", 70, 50), ("marked", 20, 0)]
)
def test_a_relay_killed_at_a_step_of_a_batch_and_restarted_publishes_each_row_once(
    engine: Engine, pg_url: str, kafka_broker: Broker, relay_id: str, step: str, unmarked: int, recovered: int
) -> None:
    topic = kafka_broker.new_topic("outbox-kill", PARTITIONS)
    ledger = PostgresLedger(engine)
    for n in range(120):
        write(ledger, topic, f"s{n % 6}", n)
    env = relay_env(pg_url, kafka_broker)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_STEP, pg_url, kafka_broker.bootstrap, relay_id, step],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert unpublished(engine) == unmarked
    restarted = subprocess.run(
        relay_command(relay_id, "--once"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stderr
    summary = json.loads(restarted.stdout)
    assert summary["recovered"] == recovered
    assert summary["published"] == unmarked - recovered
    assert unpublished(engine) == 0
    assert check_exactly_once(engine, kafka_broker.bootstrap, topic) == 120
    if step == "produced":  # the killed relay's open transaction was aborted, its records hidden
        assert read_uncommitted_count(kafka_broker.bootstrap, topic) == 120 + 50


class Relays:
    """Two ``billing relay`` processes of one transactional.id (one active, one on standby)."""

    def __init__(self, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.command, self.env, self.logs = command, env, logs
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        path = self.logs / f"relay-{self.started}.log"
        with path.open("wb") as log:
            self.processes.append(
                (subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=log, stderr=log), path)
            )

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [p for p, _ in self.processes if p.poll() is None]

    def wait_active(self, timeout: float = 180) -> subprocess.Popen[bytes]:
        """The running relay that has logged its activation (the one holding the lock)."""

        def active() -> subprocess.Popen[bytes] | None:
            for process, path in self.processes:
                if process.poll() is None and " active: " in path.read_text(errors="replace"):
                    return process
            return None

        return wait_until(
            active, timeout, "a relay to become active", interval=0.02, diagnose=lambda: self.log_text()[-3000:]
        )

    def stop(self) -> None:
        for process in self.running():
            process.send_signal(signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("relay-*.log")))


def test_relays_killed_at_random_while_rows_are_committed_publish_each_row_once(
    engine: Engine, pg_url: str, kafka_broker: Broker, relay_id: str, tmp_path: Path
) -> None:
    topic = kafka_broker.new_topic("outbox-chaos", PARTITIONS)
    ledger = PostgresLedger(engine)
    command = relay_command(relay_id, "--batch", "20", "--poll-interval", "0.02", "--log-level", "info")
    relays = Relays(command, relay_env(pg_url, kafka_broker), tmp_path)
    written, rolled_back = 0, 0
    counting = threading.Lock()
    done = threading.Event()

    def writer(keys: Sequence[str], seed: int) -> None:
        """Commits (and now and then rolls back) one row per transaction until the kills are over,
        so the relay always has a backlog: most kills land inside a batch."""
        nonlocal written, rolled_back
        rng = random.Random(seed)
        n = 0
        while not done.is_set() and n < MAX_ROWS // 2:
            key = rng.choice(keys)
            if rng.random() < 0.05:
                with pytest.raises(RuntimeError):
                    write(ledger, topic, key, -1, rollback=True)
                with counting:
                    rolled_back += 1
            else:
                write(ledger, topic, key, n)
                with counting:
                    written += 1
            n += 1
            time.sleep(rng.random() * 0.002)

    writers = [
        threading.Thread(target=writer, args=([f"a{k}" for k in range(8)], 1)),
        threading.Thread(target=writer, args=([f"b{k}" for k in range(8)], 2)),
    ]
    rng = random.Random(7)
    try:
        relays.start()
        relays.start()
        for thread in writers:
            thread.start()
        for _ in range(KILLS):
            victim = relays.wait_active()  # one still starting or standing by would test little
            time.sleep(rng.uniform(0.02, 0.5))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            relays.start()
        done.set()
        for thread in writers:
            thread.join()
        wait_until(
            lambda: unpublished(engine) == 0,
            180,
            "every committed row to be published",
            interval=0.2,
            diagnose=lambda: relays.log_text()[-3000:],
        )
    finally:
        done.set()
        relays.stop()
    assert unpublished(engine) == 0, relays.log_text()[-3000:]
    published = check_exactly_once(engine, kafka_broker.bootstrap, topic)
    assert published == written
    aborted = read_uncommitted_count(kafka_broker.bootstrap, topic) - published
    log = relays.log_text()
    recovered = sum(int(n) for n in re.findall(r"(\d+) of its rows marked published now", log))
    print(f"{written} rows committed, {rolled_back} rolled back, {KILLS} SIGKILLs, {relays.started} relay starts,")
    print(f"{aborted} aborted records hidden from read_committed, {recovered} rows marked from Kafka's progress")
    assert aborted > 0, "no kill hit an open transaction: the test did not test"
