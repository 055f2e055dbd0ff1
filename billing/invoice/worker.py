"""``billing invoicer``: final RatingResults from ``rating.results`` into finalized invoices.

Each message is a closed period (``rating_messages.FinalRating``) with its final rating; the
worker passes that rating to ``InvoiceFinalizer.finalize``, the step ``billing simulate``'s
``close_period`` ends with, so an invoice is what ``billing simulate`` computes for the same inputs.
Exactly one invoice per (subscription, period), and one ``invoice.finalized`` outbox row with it,
because:

1. ``finalize`` finds an existing invoice of the period and returns it (a redelivery writes
   nothing), and a unique constraint backs that up; the message must rate the period as that
   invoice billed it, else it is dead-lettered as ``conflicting_final_rating``, never dropped;
2. the invoice, its billed usage and its outbox row commit in one PostgreSQL transaction (one per
   Kafka batch, ``Ledger.batch``), and a Kafka offset is committed only after it;
3. PostgreSQL unreachable (``is_outage``: the connection lost or refused, the server stopping,
   starting or out of resources, told by SQLSTATE): the batch rolls back and is retried with
   backoff, never skipped and never acknowledged;
4. a message that cannot be invoiced (undecodable, inconsistent, referring to usage or terms it
   does not carry, or whose rows PostgreSQL refuses, e.g. a code too long for an index) is
   dead-lettered to ``rating.dlq`` with its reason, then acknowledged, and the worker goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from billing.rate.messages import FinalRating, read_rating_result
from invoicing.engine.charges import rating_differences
from invoicing.engine.model import Invoice
from invoicing.engine.render import rfc3339
from invoicing.ledger.outage import is_outage, short_description
from invoicing.ports import Ledger
from invoicing.service import InvoiceFinalizer
from rating.errors import BillingError
from rating.money import currency_exponent
from schemas import avro_codec
from streams.kafka.consumers import group_consumer, record_messages, run_until_stopped
from streams.kafka.messages import MAX_LETTER_DETAIL, encode_dead_letter
from streams.kafka.security import client_config
from streams.kafka.topics import RATING_DLQ, RATING_RESULTS

log = logging.getLogger("billing.invoicer")

OUTCOMES = ("finalized", "redelivered", "dead_lettered")
CONFLICTING_FINAL_RATING = "conflicting_final_rating"
"""Dead-letter reason: a final rating of an invoiced period that rates it otherwise than its invoice."""


def _finalize_rating(ledger: Ledger, rating: FinalRating) -> tuple[Invoice, bool]:
    """The invoice of the message's closed period, and whether it was created now."""
    finalizer = InvoiceFinalizer(ledger, rating.terms)
    return finalizer.finalize(rating.closed, rating.result, rating.late_usage, rating.finalized_at)


class InvoicerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "billing_invoicer_messages",
            "rating.results messages by outcome: finalized (a new invoice), redelivered (its invoice "
            "existed), dead_lettered",
            ["outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "billing_invoicer_ledger_retries",
            "Batches retried because PostgreSQL was unreachable",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "billing_invoicer_batch_seconds",
            "One batch: decode, finalize in PostgreSQL, commit, dead-letter, commit offsets",
            registry=self.registry,
        )
        self.conflicts = Counter(
            "billing_invoicer_conflicting_final_ratings",
            "Final ratings of an invoiced period that rate it otherwise than its invoice (dead-lettered as "
            "conflicting_final_rating; the invoice stays as it is)",
            registry=self.registry,
        )
        self.ledger_up = Gauge(
            "billing_invoicer_ledger_up",
            "1 while the ledger answers: the last batch's transaction, or while idle (and at start) a round "
            "trip every ledger_probe_s",
            registry=self.registry,
        )
        self.invoices = Counter(
            "billing_invoicer_invoices",
            "Invoices finalized, by currency (counted once the ledger committed them)",
            ["currency"],
            registry=self.registry,
        )
        self.invoiced = Counter(
            "billing_invoicer_invoiced_amount",
            "Totals of the invoices finalized, by currency, in the currency's major unit (2.50 for 250 "
            "cents): for charts; the ledger holds the exact amounts",
            ["currency"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "billing_invoicer_dead_letters",
            "rating.results messages dead-lettered to rating.dlq, by reason",
            ["reason"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.messages.labels(outcome=outcome)

    def observe_invoices(self, invoices: Sequence[Invoice]) -> None:
        """Count invoices the ledger has committed, so a batch retried after an outage counts once."""
        for invoice in invoices:
            total = invoice.total
            self.invoices.labels(currency=total.currency).inc()
            self.invoiced.labels(currency=total.currency).inc(total.amount / 10 ** currency_exponent(total.currency))


@dataclass(frozen=True)
class InvoiceWorkerSettings:
    bootstrap_servers: str
    group_id: str = "billing-invoicer"
    topic: str = RATING_RESULTS
    dead_letter_topic: str | None = None
    """Default: ``topic`` with ``rating.results`` replaced by ``rating.dlq`` (a prefix is kept)."""
    batch_max: int = 500
    batch_wait_s: float = 0.5
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    ledger_probe_s: float = 15.0
    """While no batch comes, how often ``ledger_up`` is measured by a round trip to the ledger."""
    metrics_port: int | None = None
    consumer_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Letter:
    message: Message
    reason: str
    detail: str
    field: str | None = None


class InvoiceWorker:
    def __init__(
        self,
        settings: InvoiceWorkerSettings,
        ledger: Ledger,
        now_ms: Callable[[], int],
        metrics: InvoicerMetrics | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.now_ms = now_ms
        """Wall-clock milliseconds: when a dead letter was rejected."""
        self.ledger = ledger
        self.metrics = metrics or InvoicerMetrics()
        self.sleep = sleep
        self.consumer = group_consumer(
            settings.bootstrap_servers,
            settings.group_id,
            # PostgreSQL may be down for a while; a retrying worker keeps its partitions
            {"max.poll.interval.ms": 900_000, **settings.consumer_config},
        )
        self.producer = Producer(client_config(settings.bootstrap_servers, {"enable.idempotence": True, "acks": "all"}))
        self.topic = settings.topic
        self.dead_letter_topic = settings.dead_letter_topic or (
            settings.topic.removesuffix(RATING_RESULTS) + RATING_DLQ
            if settings.topic.endswith(RATING_RESULTS)
            else settings.topic + ".dlq"
        )
        self.consumer.subscribe([settings.topic])
        self._probed_at = 0.0
        self._probe_ledger()  # before the first batch, which may be long in coming

    # -- one batch ---------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Consume one batch and see it through; returns the number of messages handled."""
        batch = record_messages(self.consumer.consume(self.settings.batch_max, self.settings.batch_wait_s))
        if not batch:
            if time.monotonic() - self._probed_at >= self.settings.ledger_probe_s:
                self._probe_ledger()
            return 0
        started = time.perf_counter()
        ratings: list[tuple[Message, FinalRating]] = []
        letters: list[_Letter] = []
        for message in batch:
            value = message.value()
            try:
                if value is None:
                    raise avro_codec.WireFormatError("message has no value (a tombstone?)")
                ratings.append((message, read_rating_result(value)))
            except avro_codec.WireFormatError as error:
                letters.append(_Letter(message, "undecodable", str(error)))
            except BillingError as error:
                letters.append(_Letter(message, "invalid_rating_result", error.message, error.field))
        outcomes, rejected, invoiced = self._finalize_with_retry(ratings)
        letters += rejected
        self._report_conflicts(rejected)
        self._dead_letter(letters)
        self._commit(batch)
        for outcome, count in outcomes.items():
            self.metrics.messages.labels(outcome=outcome).inc(count)
        self.metrics.messages.labels(outcome="dead_lettered").inc(len(letters))
        for letter in letters:
            self.metrics.dead_letters.labels(reason=letter.reason).inc()
        self.metrics.observe_invoices(invoiced)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return len(batch)

    def _finalize_with_retry(
        self, ratings: list[tuple[Message, FinalRating]]
    ) -> tuple[dict[str, int], list[_Letter], list[Invoice]]:
        delay = self.settings.retry_initial_s
        batched = True
        while True:
            try:
                result = self._finalize(ratings, batched)
            except Exception as error:
                if batched and not is_outage(error):
                    # a statement failed inside the shared transaction: redo the batch one
                    # transaction per message, so the message to blame is found and dead-lettered
                    log.warning("ledger batch failed, redoing it message by message: %s", short_description(error))
                    batched = False
                    continue
                if not is_outage(error):
                    raise
                self.metrics.ledger_up.set(0)
                self.metrics.retries.inc()
                log.warning(
                    "ledger unavailable, retrying %d messages in %.1fs: %s",
                    len(ratings),
                    delay,
                    short_description(error),
                )
                self.sleep(delay)
                delay = min(delay * 2, self.settings.retry_max_s)
                continue
            self.metrics.ledger_up.set(1)
            self._probed_at = time.monotonic()
            return result

    def _probe_ledger(self) -> None:
        """``ledger_up`` from a round trip, when no batch has said it lately; an outage is reported,
        anything else raised (a misconfiguration is no reason to keep running)."""
        try:
            self.ledger.check_reachable()
        except Exception as error:
            if not is_outage(error):
                raise
            self.metrics.ledger_up.set(0)
            log.warning("ledger unavailable: %s", short_description(error))
        else:
            self.metrics.ledger_up.set(1)
        self._probed_at = time.monotonic()

    def _finalize(
        self, ratings: list[tuple[Message, FinalRating]], batched: bool
    ) -> tuple[dict[str, int], list[_Letter], list[Invoice]]:
        """Finalize every rating in one ledger batch (one transaction) when ``batched`` (else one each).
        A message the service refuses is given back by its session and dead-lettered; an outage
        raises, and nothing of the batch is committed."""
        outcomes = dict.fromkeys(("finalized", "redelivered"), 0)
        letters: list[_Letter] = []
        created_invoices: list[Invoice] = []
        periods = [(r.closed.subscription.id, r.closed.period.start) for _, r in ratings]
        with self.ledger.batch(periods) if batched else nullcontext():
            for message, rating in ratings:
                # the same period twice in one batch: the ledger finds the invoice the first one
                # made, so the second is compared with it like any other
                try:
                    invoice, created = _finalize_rating(self.ledger, rating)
                except BillingError as error:
                    letters.append(_Letter(message, "not_invoiceable", error.message, error.field))
                    continue
                except Exception as error:
                    if batched or is_outage(error):
                        raise
                    # alone in its transaction and refused by PostgreSQL itself (a value too long,
                    # a constraint): the message's fault, not the ledger's availability
                    letters.append(_Letter(message, "ledger_rejected", short_description(error)))
                    continue
                if not created and (conflict := self._conflict(message, rating, invoice)) is not None:
                    letters.append(conflict)
                    continue
                outcomes["finalized" if created else "redelivered"] += 1
                if created:
                    created_invoices.append(invoice)
        return outcomes, letters, created_invoices

    def _conflict(self, message: Message, rating: FinalRating, invoice: Invoice) -> _Letter | None:
        """A redelivery is acknowledged only if it rates the period as its invoice billed it;
        another final rating of an invoiced period is dead-lettered, never dropped unseen."""
        differences = rating_differences(invoice, rating.closed, rating.result)
        if not differences:
            return None
        sub, period = rating.closed.subscription.id, rating.closed.period
        detail = (
            f"{sub} [{rfc3339(period.start)}, {rfc3339(period.end)}) was invoiced as {invoice.invoice_number}; "
            + "; ".join(f"{field}: {what}" for field, what in differences)
        )
        return _Letter(message, CONFLICTING_FINAL_RATING, detail[:MAX_LETTER_DETAIL], differences[0][0])

    def _report_conflicts(self, letters: list[_Letter]) -> None:
        """Counted and logged once the batch is through (a batch retried after an outage finds
        its conflicts again)."""
        for letter in letters:
            if letter.reason == CONFLICTING_FINAL_RATING:
                self.metrics.conflicts.inc()
                message = letter.message
                log.error(
                    "conflicting final rating %s[%s]@%s, dead-lettered: %s",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    letter.detail,
                )

    def _dead_letter(self, letters: list[_Letter]) -> None:
        if not letters:
            return
        failed_at = self.now_ms()
        for letter in letters:
            message = letter.message
            log.warning(
                "dead-lettered %s[%s]@%s: %s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                letter.reason,
                letter.detail[:300],
            )
            value = encode_dead_letter(
                letter.reason,
                letter.detail,
                message.value() or b"",
                message.topic() or self.topic,
                message.partition() or 0,
                message.offset() or 0,
                failed_at,
                letter.field,
                message.key(),
            )
            self.producer.produce(self.dead_letter_topic, value, key=message.key())
        if self.producer.flush(30) > 0:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"dead letters not delivered to {self.dead_letter_topic}")
            )

    def _commit(self, batch: list[Message]) -> None:
        ends: dict[tuple[str, int], int] = {}
        for message in batch:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            ends[(topic, partition)] = max(ends.get((topic, partition), 0), offset + 1)
        offsets = [TopicPartition(topic, partition, end) for (topic, partition), end in ends.items()]
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    # -- loop --------------------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        run_until_stopped(self, should_stop)

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(10)
