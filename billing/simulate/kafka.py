"""``billing simulate --via kafka``: a scenario through the real streaming loop on a test clock.

The calendar is the simulation's (the same code as the in-process run), but usage and invoices
travel the production path: events are produced to ``usage.events``; a ``billing worker``
subprocess (Faust) validates, deduplicates and windows them; a sink writes its outputs to the
usage store; when a period closes, the rating agent publishes the final RatingResult on
``rating.results`` and the invoice worker finalizes the invoice from it in PostgreSQL.

A flush waits until everything produced so far has gone through: the worker has committed the
end of ``usage.events`` (it flushes its outputs before committing), then the sink and the
dead-letter reader have read their topics to the end. Topics carry a prefix unique to the run,
so a simulation never touches another pipeline's topics on the same cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from billing.clock import wall_ms
from billing.invoice.worker import InvoiceWorker, InvoiceWorkerSettings
from billing.rate.agent import RatingAgent
from billing.simulate.runner import Simulation, SimulationResult, terms_of
from billing.simulate.scenario import Scenario
from billing.usage_reader import StoreUsageReader
from invoicing.engine.model import Invoice
from invoicing.engine.subscriptions import ClosedPeriod
from invoicing.ports import Ledger
from schemas import avro_codec
from streams.ingest.producer import TUNING
from streams.inprocess import PipelineStats
from streams.kafka import messages
from streams.kafka.security import client_config
from streams.kafka.topics import PIPELINE_TOPICS, RATING_RESULTS, USAGE_DLQ, USAGE_EVENTS, ensure_topics
from streams.operators.records import Reason, Rejection, UsageEvent, UsageRecord
from streams.ports import DeadLetter, UsageStore
from streams.store.sink import SinkSettings, UsageSink

WAIT_S = 120.0
"""How long a flush waits for the workers before it gives up (a stuck worker fails the run)."""


@dataclass(frozen=True)
class KafkaRun:
    """Where a simulation's loop runs: the cluster, its topics' prefix and the worker's settings."""

    bootstrap: str
    prefix: str
    partitions: int = 2

    @property
    def app_id(self) -> str:
        return f"{self.prefix}usage"

    def topic(self, name: str) -> str:
        return self.prefix + name


def _wait(what: str, done: Callable[[], bool]) -> None:
    """Poll ``done`` until it holds; a retriable broker error (the group coordinator moving or
    loading, a leader election) is asked again, anything else raised."""
    deadline = time.monotonic() + WAIT_S
    while not _holds(done):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not catch up within {WAIT_S:.0f} s")
        time.sleep(0.02)


def _holds(done: Callable[[], bool]) -> bool:
    try:
        return done()
    except KafkaException as error:
        if error.args and error.args[0].retriable():
            return False
        raise


def _end(consumer: Consumer, topic: str, partition: int) -> TopicPartition:
    """The partition's high watermark; a topic created a moment ago may not have a leader yet."""
    deadline = time.monotonic() + 30
    while True:
        try:
            high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            return TopicPartition(topic, partition, high)
        except KafkaException:  # no leader yet, or the metadata is still settling
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ends(consumer: Consumer, topic: str, partitions: int) -> list[TopicPartition]:
    return [_end(consumer, topic, p) for p in range(partitions)]


class KafkaUsageDriver:
    """The simulation's usage driver over Kafka (see the module docstring)."""

    def __init__(
        self,
        simulation: Simulation,
        run: KafkaRun,
        usage: UsageStore,
        agent: RatingAgent,
        worker: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.worker = worker
        self.simulation = simulation
        self.run = run
        self.agent = agent
        self.touched: set[str] = set()
        self.stats = PipelineStats()
        self.produced = 0
        self.producer = Producer(client_config(run.bootstrap, TUNING, {"linger.ms": 0}))
        self.sink = UsageSink(
            SinkSettings(run.bootstrap, group_id=f"{run.prefix}sink", batch_wait_s=0.05, topic_prefix=run.prefix),
            usage,
            on_written=self._written,
            now_ms=wall_ms,
        )
        self.offsets = Consumer(client_config(run.bootstrap, {"group.id": run.app_id}))
        self.dlq = Consumer(client_config(run.bootstrap, {"group.id": f"{run.prefix}dlq-reader"}))
        self.dlq.assign([TopicPartition(run.topic(USAGE_DLQ), p, 0) for p in range(run.partitions)])
        self.dlq_read = [0] * run.partitions
        self.sequence: dict[tuple[int | None, int | None], int] = {}
        """Where each produced event landed → its arrival rank: dead letters are listed in arrival
        order, as the in-process run lists them."""

    def process(self, event: UsageEvent) -> None:
        value = avro_codec.encode(messages.USAGE_EVENT, messages.usage_event_avro(event))
        # The message keeps the wall-clock timestamp: a scenario's arrival instants lie months back,
        # and the broker's time-based retention would delete such records before the worker reads them.
        sequence = self.produced

        def delivered(error: object, message: Message) -> None:
            if error is None:
                self.sequence[(message.partition(), message.offset())] = sequence

        self.producer.produce(
            self.run.topic(USAGE_EVENTS), key=event.subscription_id.encode(), value=value, on_delivery=delivered
        )
        self.producer.poll(0)
        self.produced += 1

    def _written(self, records: list[UsageRecord], _window_subscriptions: set[str]) -> None:
        for record in records:
            self.stats.accepted += 1
            self.simulation.accepted(record)
            self.touched.add(record.subscription_id)

    def flush(self) -> None:
        if self.producer.flush(30):
            raise RuntimeError("usage events were not delivered to Kafka")
        source = self.run.topic(USAGE_EVENTS)

        def worker_done() -> bool:
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"the usage worker exited with status {self.worker.returncode}; see its log")
            ends = _ends(self.offsets, source, self.run.partitions)
            committed = self.offsets.committed([TopicPartition(source, p) for p in range(self.run.partitions)], 10)
            # A partition nothing was ever produced to has no committed offset (negative): done.
            return all(c.offset >= e.offset or e.offset == 0 for c, e in zip(committed, ends, strict=True))

        _wait("the usage worker", worker_done)
        outputs = [self.sink.accepted_topic, self.run.topic("usage.windows")]
        ends = [tp for topic in outputs for tp in _ends(self.offsets, topic, self.run.partitions)]

        def sink_done() -> bool:
            self.sink.run_once()
            positions = {(tp.topic, tp.partition): tp.offset for tp in self.sink.consumer.position(ends)}
            return all(positions[(e.topic, e.partition)] >= e.offset for e in ends if e.offset > 0)

        _wait("the sink", sink_done)
        self._read_dead_letters()
        self.stats.duplicates = self.produced - self.stats.accepted - self.stats.rejected
        cycles = self.simulation.cycles
        self.agent.refresh([cycles[s] for s in sorted(self.touched) if s in cycles], self.simulation.clock.now())
        self.touched.clear()

    def _read_dead_letters(self) -> None:
        topic = self.run.topic(USAGE_DLQ)
        ends = _ends(self.offsets, topic, self.run.partitions)
        letters = []

        def behind() -> bool:
            # the consumer's position, not the last record read: the worker writes its dead letters
            # in Kafka transactions, and a transaction's commit marker takes an offset at the end
            # that no record is delivered for
            positions = self.dlq.position([TopicPartition(e.topic, e.partition) for e in ends])
            read = [max(p.offset, self.dlq_read[p.partition]) for p in positions]
            return any(r < e.offset for r, e in zip(read, ends, strict=True))

        while behind():
            for message in self.dlq.consume(500, timeout=0.5):
                value, partition, offset = message.value(), message.partition(), message.offset()
                if message.error() is not None or value is None or partition is None or offset is None:
                    continue
                self.dlq_read[partition] = offset + 1
                raw = messages.read_dead_letter(value)
                reason = Reason(raw["reason"])
                # the envelope keeps the original bytes, and with them whose event it was
                first = messages.read_usage(raw["original"])[0]
                subscription_id, key = first.subscription_id, first.idempotency_key
                letters.append(
                    DeadLetter(
                        Rejection(reason, raw["detail"], raw["field"], subscription_id or None, key or None),
                        raw["original"],
                        raw["source_topic"],
                        raw["source_partition"],
                        raw["source_offset"],
                    )
                )
                if reason is Reason.IDEMPOTENCY_CONFLICT:
                    self.stats.conflicts += 1
                else:
                    self.stats.invalid[reason] += 1
        letters.sort(key=lambda letter: self.sequence.get((letter.source_partition, letter.source_offset), -1))
        self.simulation.dead_letters.publish(letters)

    def close(self) -> None:
        self.sink.close()
        self.offsets.close()
        self.dlq.close()


class KafkaFinalizer:
    """Closing a period over Kafka: the rating agent publishes its final RatingResult and the
    invoice worker finalizes it; the simulation goes on once the invoice is in the ledger."""

    def __init__(self, agent: RatingAgent, invoices: InvoiceWorker, ledger: Ledger) -> None:
        self.agent = agent
        self.invoices = invoices
        self.ledger = ledger

    def prefetch(self, closing: Collection[ClosedPeriod]) -> None:
        self.agent.prefetch(closing)

    def close_period(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime] = ()
    ) -> Invoice:
        self.agent.publish(self.agent.rate(closed, finalized_at, late_periods))
        return self._finalized(closed)

    def close_late_usage(
        self, closed: ClosedPeriod, finalized_at: datetime, late_periods: Collection[datetime]
    ) -> Invoice | None:
        rating = self.agent.rate(closed, finalized_at, late_periods)
        if not rating.late_usage:
            return None  # no late period's usage changed: nothing to invoice, nothing published
        self.agent.publish(rating)
        return self._finalized(closed)

    def _finalized(self, closed: ClosedPeriod) -> Invoice:
        """Wait until the invoice worker has finalized the invoice of ``closed``."""
        found: list[Invoice] = []

        def finalized() -> bool:
            self.invoices.run_once()
            with self.ledger.session() as session:
                invoice = session.find_invoice(closed.subscription.id, closed.period.start)
            if invoice is not None:
                found.append(invoice)
            return invoice is not None

        _wait("the invoice worker", finalized)
        return found[0]


@contextmanager
def usage_worker(run: KafkaRun, catalog: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``billing worker`` for this run, stopped (SIGTERM, then SIGKILL) when the block ends."""
    command = [
        sys.executable,
        "-m",
        "billing.cli",
        "worker",
        "--catalog",
        str(catalog),
        "--bootstrap",
        run.bootstrap,
        "--partitions",
        str(run.partitions),
        "--store",
        "memory",
        "--data-dir",
        str(log.parent.resolve() / "worker"),
        "--app-id",
        run.app_id,
        "--topic-prefix",
        run.prefix,
        "--commit-interval",
        "0.1",
        "--retention-days",
        "36500",  # scenarios replay months-old usage; the dedup memory must span them
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def simulate_over_kafka(
    scenario: Scenario,
    scenario_file: Path,
    bootstrap: str,
    usage: UsageStore,
    ledger: Ledger,
    work_dir: Path,
    partitions: int = 2,
) -> SimulationResult:
    """Run ``scenario`` (read from ``scenario_file``, the worker's catalog) through Kafka into
    ``usage`` and ``ledger``; the worker's log is kept in ``work_dir``."""
    run = KafkaRun(bootstrap, f"sim-{uuid.uuid4().hex[:12]}.", partitions)
    ensure_topics(bootstrap, partitions, topics=[run.topic(t) for t in PIPELINE_TOPICS])
    work_dir.mkdir(parents=True, exist_ok=True)
    drivers: list[KafkaUsageDriver] = []

    agent = RatingAgent(bootstrap, StoreUsageReader(usage), ledger, terms_of(scenario), topic=run.topic(RATING_RESULTS))
    invoices = InvoiceWorker(
        InvoiceWorkerSettings(
            bootstrap, group_id=f"{run.prefix}invoicer", topic=run.topic(RATING_RESULTS), batch_wait_s=0.05
        ),
        ledger,
        now_ms=wall_ms,
    )
    with usage_worker(run, scenario_file, work_dir / "worker.log") as worker:

        def driver(simulation: Simulation) -> KafkaUsageDriver:
            drivers.append(KafkaUsageDriver(simulation, run, usage, agent, worker))
            return drivers[-1]

        simulation = Simulation(
            scenario, usage, ledger, driver=driver, finalizer=KafkaFinalizer(agent, invoices, ledger)
        )
        try:
            result = simulation.run()
            # a subscription's running result is its open period's: one rated before the period
            # closed (its last usage arrived then) is not current any more
            current = {s: r for s, r in agent.current.items() if (c := result.cycles.get(s)) and c.period == r.period}
            return replace(result, current_usage=current)
        finally:
            invoices.close()
            for d in drivers:
                d.close()
