"""A locked-down broker (ops/kafka.py ``start --secure``: SASL/SCRAM-SHA-512 over TLS, the
StandardAuthorizer, the ACLs of streams/kafka/acls.py) refuses a client without credentials or with
a wrong password, lets each role's principal do only what its role needs (the producers write
``usage.events`` and nothing else), and the whole billing loop runs on it with one principal per
role, read from the environment, without a password in any log."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka.acls import ROLES
from tests.kafka_fixtures import SECURE_PREFIXES, SecureBroker, ops_kafka

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUIET = logging.getLogger("tests.kafka_security.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
OWN_GROUP = {
    "usage": "billing-usage",
    "sink": "billing-sink",
    "rater": "billing-sink",
    "invoicer": "billing-invoicer",
    "relay": "billing-outbox-relay",
}
"""A consumer group each role may use: librdkafka looks the group up even for assigned partitions,
so a read is refused for the topic only once the group is allowed (the producers have none)."""
PREFIX = SECURE_PREFIXES[1]
"""The loop's pipeline: apart from the topics the ACL probes write junk into."""
SEEDED = ("usage.events", "usage.accepted", "usage.windows", "rating.results")


def write(secure: SecureBroker, user: str | None, topic: str, password: str | None = None) -> KafkaError | None:
    """What became of one record ``user`` produced to ``topic``: None when the broker took it."""
    errors: list[KafkaError] = []
    config = secure.config(user, password, **{"enable.idempotence": True, "acks": "all"})
    config |= {"message.timeout.ms": 4000, "logger": QUIET, "error_cb": errors.append}
    producer = Producer(config)
    outcome: list[KafkaError | None] = []
    producer.produce(topic, key=b"sub_1", value=b"probe", on_delivery=lambda error, _message: outcome.append(error))
    try:
        producer.flush(15)
    except KafkaException as fatal:  # a principal without any WRITE gets no producer id at all
        return fatal.args[0]  # type: ignore[no-any-return]
    assert len(outcome) == 1, errors
    return outcome[0]


def read(secure: SecureBroker, user: str | None, topic: str) -> KafkaError | None:
    """Whether ``user`` reads the record seeded into ``topic``: None when it did, else the error."""
    group = f"{OWN_GROUP.get(user or '', 'probe')}-{uuid.uuid4().hex[:8]}"
    config = secure.config(user, **{"group.id": group, "enable.auto.commit": False})
    consumer = Consumer({**config, "logger": QUIET, "socket.connection.setup.timeout.ms": 5000})
    try:
        try:
            hidden = consumer.list_topics(topic, timeout=5).topics[topic].error
        except KafkaException as refused:  # no session at all: the broker closed the connection
            return refused.args[0]  # type: ignore[no-any-return]
        if hidden is not None:  # not even DESCRIBE: the broker does not tell the topic exists
            return hidden  # type: ignore[no-any-return]
        consumer.assign([TopicPartition(topic, 0, -2)])
        for _ in range(16):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return None
            if error.code() != KafkaError._PARTITION_EOF:
                return error
        return KafkaError(KafkaError._TIMED_OUT, "nothing read")
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def seeded(secure_kafka: SecureBroker) -> SecureBroker:
    """One record in partition 0 of the topics read below, written by the admin."""
    producer = Producer(secure_kafka.config("admin"))
    for topic in SEEDED:
        producer.produce(topic, key=b"seed", value=b"seed", partition=0)
    assert producer.flush(30) == 0
    return secure_kafka


def test_a_client_without_credentials_reads_and_writes_nothing(seeded: SecureBroker) -> None:
    admin = AdminClient({**seeded.config(None), "logger": QUIET, "socket.connection.setup.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    assert write(seeded, None, "usage.events") is not None
    assert write(seeded, None, "rating.results") is not None
    assert read(seeded, None, "usage.events") is not None


def test_a_wrong_password_is_refused(seeded: SecureBroker) -> None:
    errors: list[KafkaError] = []
    config = {**seeded.config("producer", "not-the-password"), "logger": QUIET, "error_cb": errors.append}
    with pytest.raises(KafkaException):
        AdminClient(config).list_topics(timeout=5)
    assert write(seeded, "producer", "usage.events", password="not-the-password") is not None
    assert write(seeded, "producer", "usage.events") is None  # the right one is taken


def test_the_cli_says_whose_credentials_were_refused(seeded: SecureBroker) -> None:
    """A command with a wrong password says the credentials were refused (not "start a broker"),
    with no traceback and no password; one with incomplete settings names the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    producer = {k: v for k, v in seeded.env("producer").items() if k != "KAFKA_SASL_PASSWORD_FILE"}
    command = [sys.executable, "-m", "billing.cli", "produce", "--generate", "3"]
    refused = subprocess.run(
        command, env={**env, **producer, "KAFKA_SASL_PASSWORD": "wrong-pw-123"}, capture_output=True, text=True
    )
    message = [line for line in refused.stderr.splitlines() if not line.startswith("%")]
    assert refused.returncode == 1, refused.stderr
    assert message and message[-1].startswith(
        "error: Kafka refused the credentials of SASL_SSL SCRAM-SHA-512 as producer"
    )
    assert "Traceback" not in refused.stderr and "wrong-pw-123" not in refused.stderr
    incomplete = subprocess.run(command, env={**env, **producer}, capture_output=True, text=True)
    assert incomplete.returncode == 2 and "Traceback" not in incomplete.stderr
    assert "KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required" in incomplete.stderr


WRITES = [
    ("producer", "usage.events", True),
    ("producer", "rating.results", False),  # anyone who can write rating.results can mint invoices
    ("producer", "usage.accepted", False),
    ("producer", "catalog.subscriptions", False),
    ("usage", "usage.windows", True),
    ("usage", "usage.dlq", True),
    ("usage", "rating.results", False),
    ("sink", "usage.windows", False),
    ("rater", "rating.results", True),
    ("rater", "usage.events", False),
    ("invoicer", "rating.dlq", True),
    ("invoicer", "invoice.finalized", False),
    ("relay", "catalog.subscriptions", True),
    ("relay", "rating.results", False),
]


@pytest.mark.parametrize(("user", "topic", "allowed"), WRITES)
def test_each_principal_writes_only_its_topics(seeded: SecureBroker, user: str, topic: str, allowed: bool) -> None:
    error = write(seeded, user, topic)
    if allowed:
        assert error is None, error
    else:
        assert error is not None
        authorization = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)
        assert error.code() in authorization, error


READS = [
    ("producer", "usage.events", False),
    ("producer", "usage.accepted", False),
    ("usage", "usage.events", True),
    ("usage", "rating.results", False),
    ("sink", "usage.accepted", True),
    ("sink", "usage.events", False),
    ("rater", "usage.windows", True),
    ("rater", "usage.events", False),  # only its end offsets (DESCRIBE), never its records
    ("invoicer", "rating.results", True),
    ("invoicer", "usage.accepted", False),
    ("relay", "usage.events", False),
]


@pytest.mark.parametrize(("user", "topic", "allowed"), READS)
def test_each_principal_reads_only_its_topics(seeded: SecureBroker, user: str, topic: str, allowed: bool) -> None:
    error = read(seeded, user, topic)
    if allowed:
        assert error is None, error
    else:
        refusals = {KafkaError.TOPIC_AUTHORIZATION_FAILED} | (
            {KafkaError.GROUP_AUTHORIZATION_FAILED} if user == "producer" else set()
        )
        assert error is not None and error.code() in refusals, error


def test_the_producers_principal_holds_exactly_write_on_usage_events(secure_kafka: SecureBroker) -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient(secure_kafka.config("admin"))
    wanted = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        "User:producer",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    found = admin.describe_acls(wanted, request_timeout=30).result()
    assert sorted((b.restype.name, b.name, b.operation.name, b.permission_type.name) for b in found) == sorted(
        ("TOPIC", prefix + "usage.events", operation, "ALLOW")
        for prefix in SECURE_PREFIXES
        for operation in ("DESCRIBE", "WRITE")
    )


def test_the_whole_loop_runs_with_a_principal_per_role(secure_kafka: SecureBroker, pg_url: str, tmp_path: Path) -> None:
    """``billing worker`` (usage worker, rater, invoicer, relay, API) on the locked-down broker, each
    role as its own principal (``KAFKA_<ROLE>_SASL_*``), usage produced as ``producer``: the
    scenario's invoices come out as ``billing simulate`` computes them, and no password is logged."""
    from sqlalchemy import create_engine

    from billing.clock import FileClock
    from billing.simulate import Simulation, load_scenario
    from invoicing.engine.render import invoice_to_dict
    from invoicing.ledger.memory import MemoryLedger
    from invoicing.ledger.postgres import PostgresLedger
    from schemas import avro_codec
    from streams.ingest.producer import TUNING
    from streams.kafka import messages
    from streams.memory import MemoryUsageStore
    from tests.integration.test_billing_worker import CASE, _cli, _free_port, _invoices, _wait_for_invoices

    scenario = load_scenario(CASE)
    expected = Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run().invoices
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env |= {"DATABASE_URL": pg_url, **secure_kafka.env("admin")}  # the supervisor: it ensures the topics
    for role, principal in {"usage": "usage", "rater": "rater", "invoicer": "invoicer", "relay": "relay"}.items():
        own = secure_kafka.env(principal)
        env[f"KAFKA_{role.upper()}_SASL_USERNAME"] = own["KAFKA_SASL_USERNAME"]
        env[f"KAFKA_{role.upper()}_SASL_PASSWORD_FILE"] = own["KAFKA_SASL_PASSWORD_FILE"]
    env |= {"KAFKA_API_SASL_USERNAME": "producer", "KAFKA_API_SASL_PASSWORD": secure_kafka.broker.password("producer")}
    env.pop("CLICKHOUSE_URL", None)
    applied = _cli("catalog", "apply", str(CASE), env=env)
    assert applied.returncode == 0, applied.stderr

    clock = tmp_path / "now"
    FileClock.set(clock, min(s.start_at for s in scenario.subscriptions))
    data = tmp_path / "loop"
    command = [
        *(sys.executable, "-m", "billing.cli", "worker", "--data-dir", str(data), "--topic-prefix", PREFIX),
        *("--partitions", "2", "--store", "memory", "--retention-days", "36500"),
        *("--clock-file", str(clock), "--log-level", "info", "--api-port", str(_free_port())),
    ]
    supervisor_log = tmp_path / "worker.log"
    loop = subprocess.Popen(command, env=env, stdout=supervisor_log.open("wb"), stderr=subprocess.STDOUT)
    engine = create_engine(pg_url)
    ledger = PostgresLedger(engine)
    producer = Producer({**secure_kafka.config("producer"), **TUNING})
    try:
        instants = sorted({e.arrives_at for e in scenario.events} | {i.issued_at for i in expected if i.issued_at})
        for instant in instants:
            for event in (e for e in scenario.events if e.arrives_at == instant):
                value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(event.usage_event()))
                producer.produce(PREFIX + "usage.events", key=event.subscription_id.encode(), value=value)
            assert producer.flush(30) == 0
            FileClock.set(clock, instant)
            due = [i for i in expected if i.issued_at is not None and i.issued_at <= instant]
            _wait_for_invoices(ledger, scenario.tenant_id, len(due), instant, loop, supervisor_log, data)
        assert [invoice_to_dict(i) for i in _invoices(ledger, scenario.tenant_id)] == [
            invoice_to_dict(i) for i in expected
        ]
    finally:
        loop.send_signal(signal.SIGTERM)
        try:
            status = loop.wait(90)
        except subprocess.TimeoutExpired:
            loop.kill()
            raise
        engine.dispose()
    assert status == 0, supervisor_log.read_text()
    supervised = supervisor_log.read_text()
    for role in ("usage", "rater", "invoicer", "relay"):  # usage-0, usage-1 … with more than one core
        assert re.search(rf"{role}(-\d+)? started \(pid \d+\), log \S+, kafka as {role}", supervised), supervised
    for role in ("rater", "invoicer", "relay"):  # what each role's own process says it connects as
        assert f"kafka: SASL_SSL SCRAM-SHA-512 as {role}" in (data / "logs" / f"{role}.log").read_text()
    logs = supervised + "".join(p.read_text() for p in (data / "logs").glob("*.log"))
    for user in ("admin", *ROLES):
        assert secure_kafka.broker.password(user) not in logs, f"{user}'s password in the logs"


def test_ops_kafka_cli_starts_a_secure_broker_and_prints_no_password(tmp_path: Path) -> None:
    """``ops/kafka.py start --secure`` (SASL_PLAINTEXT here; the fixture runs SASL_SSL): each role's
    variables by ``env --user``, naming the password file; a client with them is let in."""
    directory = tmp_path / "kafka"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def ops(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(ROOT / "ops" / "kafka.py"), *args, "--dir", str(directory)]
        return subprocess.run(command, env=env, capture_output=True, text=True)

    started = ops("start", "--secure")
    broker = ops_kafka.KafkaBroker(directory)
    try:
        assert started.returncode == 0, started.stderr
        assert "SASL_PLAINTEXT" in started.stdout
        shown = ops("env", "--user", "producer")
        assert shown.returncode == 0, shown.stderr
        variables = dict(line.removeprefix("export ").split("=", 1) for line in shown.stdout.splitlines())
        assert variables["KAFKA_SASL_USERNAME"] == "producer"
        assert variables["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        for user in ("admin", *ROLES):
            assert broker.password(user) not in started.stdout + shown.stdout
        assert Path(variables["KAFKA_SASL_PASSWORD_FILE"]).stat().st_mode & 0o077 == 0
        # a client configured from those variables alone (streams/kafka/security.py) is let in
        probe = subprocess.run(
            [sys.executable, "-c", "from streams.ingest.producer import UsageProducer as P; P(__import__('os')"
             ".environ['KAFKA_BOOTSTRAP_SERVERS'], 'usage.events', metadata_timeout=20).flush()"],
            env={**env, **variables},
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        wrong = ops("env", "--user", "mallory")
        assert wrong.returncode == 2 and "mallory" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        broker.stop(timeout=10)
