"""``billing rater``: the billing calendar on the wall clock, over the catalog topics.

The rater is the process that owns the usage store's writer (the sink; with embedded chDB one
process owns the directory), so it sees every write as it happens:

1. It follows the compacted catalog topics (``catalog.terms``, ``catalog.plans``,
   ``catalog.subscriptions``, published from the ledger by ``billing relay``) from their start.
   A subscription opens its billing cycle on its first record; a later revision on another plan
   version changes the plan there and then (prorated), one whose status is canceled ends it.
2. The sink writes usage; the rating agent re-rates the open periods of the subscriptions written
   (the running RatingResult, served over gRPC when ``--grpc-port`` is given).
3. On the clock, every period that ended at least ``--grace-period`` ago is due. Before handing
   due periods over, the rater waits until the usage worker has committed everything produced so
   far and the sink has written it (so a period is rated with all usage that arrived before it
   fell due); then the rating agent publishes each final RatingResult on ``rating.results``, with
   the current usage of any earlier period of that subscription whose usage changed since its
   invoice (late usage, billed as an ADJUSTMENT by the invoice worker). ``finalized_at`` is the
   instant the period fell due, not the moment the rater got to it, so anyone can recompute it.
4. What it decided is recorded on the compacted ``billing.calendar`` topic, key subscription: the
   changes it applied, each at its instant, and the end of the last period it handed over. A
   restarted rater replays that record into the same calendar; a period handed over twice (a crash
   between publishing and recording) is finalized once by the invoice worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from fractions import Fraction
from functools import partial

from confluent_kafka import TopicPartition

from billing.clock import Clock, wall_ms
from billing.rate.agent import RatingAgent
from billing.rate.calendar_log import CalendarLog
from billing.rate.catalog import RaterCatalog
from billing.rate.metrics import RaterMetrics
from billing.rate.settings import RaterSettings
from invoicing.engine.calendar import Calendar, Change
from invoicing.engine.subscriptions import BillingCycle, ClosedPeriod, SubscriptionStatus
from invoicing.engine.terms import BillingTerms
from invoicing.engine.trials import trial_used_up_at
from invoicing.ledger.catalog import plan_key
from invoicing.ports import Ledger, SubscriptionRecord, UsageReader
from rating.errors import BillingError, UnknownReference
from rating.periods import Period, from_epoch_ms
from rating.rate import RatingResult
from streams.kafka.consumers import run_until_stopped, topic_reader
from streams.kafka.topics import RATING_RESULTS, USAGE_ACCEPTED, USAGE_EVENTS, USAGE_WINDOWS, ensure_topics
from streams.metrics import SinkMetrics
from streams.operators.records import UsageRecord
from streams.ports import UsageStore
from streams.store.sink import SinkSettings, UsageSink

log = logging.getLogger("billing.rater")


class Rater:
    """The wall-clock loop (see the module docstring)."""

    def __init__(
        self,
        settings: RaterSettings,
        store: UsageStore,
        usage: UsageReader,
        ledger: Ledger,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.ledger = ledger
        self.calendar = Calendar(settings.grace_period)
        self.catalog = RaterCatalog(settings)
        self.log = CalendarLog(settings)
        self.agent = RatingAgent(
            settings.bootstrap_servers, usage, ledger, self._terms, topic=settings.topic(RATING_RESULTS)
        )
        wanted = [settings.topic(t) for t in (RATING_RESULTS, USAGE_EVENTS, USAGE_ACCEPTED, USAGE_WINDOWS)]
        ensure_topics(settings.bootstrap_servers, settings.partitions, topics=wanted)
        self.touched: set[str] = set()
        self.trial_usage: dict[str, int] = {}
        """Per trialing subscription with a balance: the latest usage instant (ms) in its trial."""
        self.trial_checks: set[str] = set()
        """Trialing subscriptions with usage written since their balance was last checked."""
        self.late_checks: set[str] = set()
        """Ended subscriptions with usage written since their late usage was last checked: only
        they are read when their cycle reaches a boundary (each check is a store read)."""
        self.metrics = RaterMetrics()
        self.sink = UsageSink(
            SinkSettings(
                settings.bootstrap_servers,
                group_id=f"{settings.topic_prefix}{settings.sink_group}",
                batch_wait_s=0.05,
                topic_prefix=settings.topic_prefix,
            ),
            store,
            on_written=self._written,
            now_ms=wall_ms,
            # on the rater's registry: its one metrics port serves the embedded sink's latency too
            metrics=SinkMetrics(self.metrics.registry),
        )
        self.offsets = topic_reader(settings.bootstrap_servers, settings.usage_group)
        """Reads the usage worker's committed offsets; never joins its group."""
        self.waiting: list[ClosedPeriod] = []
        """Due periods not handed over yet (the usage pipeline was behind, or terms are missing)."""
        self.handed = 0
        self.scheduled: dict[str, SubscriptionRecord] = {}
        """Revisions that take effect later (a cancel or plan change at an instant), by subscription."""

    def _terms(self, tenant_id: str) -> BillingTerms:
        terms = self.catalog.terms.get(tenant_id)
        if terms is None:
            raise UnknownReference("tenant_id", f"no terms of tenant {tenant_id} in catalog.terms yet")
        return terms

    def _written(self, records: list[UsageRecord], window_subscriptions: set[str]) -> None:
        # windows too: an event's record and its window rows can reach the sink in different
        # batches, and usage is read from the windows
        self.touched.update(r.subscription_id for r in records)
        self.touched.update(window_subscriptions)
        for record in records:
            cycle = self.calendar.cycles.get(record.subscription_id)
            if cycle is not None and cycle.period is None:
                self.late_checks.add(record.subscription_id)
            if cycle is None or not cycle.is_trial or cycle.subscription.trial_balance is None:
                continue
            if cycle.period is not None and cycle.period.contains(from_epoch_ms(record.recorded_at_ms)):
                latest = self.trial_usage.get(record.subscription_id, record.recorded_at_ms)
                self.trial_usage[record.subscription_id] = max(latest, record.recorded_at_ms)
                self.trial_checks.add(record.subscription_id)

    def end_used_up_trials(self) -> None:
        """End a trial whose rated usage reached its balance, right after the latest usage in it
        (design section 4, as ``billing simulate`` does), and record that on the calendar."""
        ended = []
        checks, self.trial_checks = self.trial_checks, set()  # only what new usage may have changed
        for sub in sorted(checks):
            latest = self.trial_usage[sub]
            cycle = self.calendar.cycles.get(sub)
            if cycle is None or cycle.period is None or not cycle.is_trial or cycle.subscription.trial_balance is None:
                del self.trial_usage[sub]
                continue
            end = trial_used_up_at(cycle, from_epoch_ms(latest), partial(self._rate_trial, cycle))
            if end is None:
                continue
            revision = self.calendar.history[sub][-1].revision
            self.calendar.apply(Change(end, revision, cycle.subscription, cycle.plan, trial_ended=True))
            del self.trial_usage[sub]
            ended.append(sub)
            self._trial_ended_in_ledger(sub, end)
        if ended:
            self.log.record(self.calendar, ended)

    def _trial_ended_in_ledger(self, subscription_id: str, end: datetime) -> None:
        """Write the trial's early end on the ledger's subscription, so its status is read true
        (ACTIVE, or TRIAL_EXPIRED without a payment method) from then on. The billing does not
        depend on it (the calendar record has it): a failed write is logged, not retried."""
        try:
            with self.ledger.session() as session:
                record = session.get_subscription(subscription_id)
                if record is None:
                    return
                life = record.lifecycle
                if life.trial_end_at is not None and life.trial_end_at <= end:
                    return  # ended by then already (a plan change cut it, or this was written)
                session.save_subscription(
                    record.subscription,
                    record.plan_version,
                    record.status,
                    replace(life, trial_end_at=end),
                    recorded_at=self.clock.now(),
                )
        except Exception:  # the ledger is down: billing goes on, the status follows the nominal end
            log.exception("the early end of the trial of %s was not written to the ledger", subscription_id)

    def _rate_trial(self, cycle: BillingCycle, usage: Period) -> RatingResult:
        pricing = self.agent.pricing(cycle.subscription.tenant_id)
        return pricing.rate(cycle.subscription, cycle.plan, usage, Fraction(0), usage.end)

    # -- catalog → calendar ------------------------------------------------------------------------
    def start(self) -> None:
        """Catch up with the catalog, replay the recorded calendar, open what is new."""
        self.catalog.catch_up()
        self.catalog.take_arrived()  # all of them are applied below
        history, handed = self.log.read(self.catalog)
        self.calendar.replay(history, handed)
        self._apply(self.catalog.subscriptions.values())
        # Boundaries of ended subscriptions that passed before this start are not revisited; what
        # was written for them and not checked (a crash) is checked at their next boundary.
        self.calendar.late_due(self.clock.now())
        self.late_checks = {sub for sub, cycle in self.calendar.cycles.items() if cycle.period is None}
        log.info(
            "rater started: %d subscriptions, %d periods handed over before", len(self.calendar.cycles), len(handed)
        )

    def _apply(self, records: Iterable[SubscriptionRecord]) -> None:
        """Apply new revisions: each at its ``effective_at`` (a cancel or plan change at an instant,
        kept in ``scheduled`` until the clock reaches it), or now for one without (a catalog file)."""
        now = self.clock.now()
        changed = []
        for record in records:
            history = self.calendar.history.get(record.id)
            if history and history[-1].revision >= record.revision:
                continue
            plan = self.catalog.plan_of(record)
            if plan is None:
                log.warning("subscription %s waits for plan version %s", record.id, record.plan_version)
                continue
            effective = record.lifecycle.effective_at
            start = record.subscription.start_at
            if not history and effective is not None and effective > start and not self._open_before(record):
                continue
            if record.lifecycle.pending(now):
                self.scheduled[record.id] = record
                if not history:
                    changed.append(record.id)
                continue
            self.scheduled.pop(record.id, None)
            at = self.calendar.instant_of(record.subscription, effective, now)
            self.calendar.apply(Change(at, record.revision, record.subscription, plan, record.stops_billing))
            changed.append(record.id)
        if changed:
            self.log.record(self.calendar, changed)

    def _open_before(self, record: SubscriptionRecord) -> bool:
        """Open a subscription first seen at a revision that takes effect after its start: on its
        state before that revision (the previous plan of a plan change), from the start. False
        while that plan version has not arrived."""
        life, sub = record.lifecycle, record.subscription
        code, version = record.plan_at(sub.start_at)
        plan = self.catalog.plans.get(plan_key(sub.tenant_id, code, version))
        if plan is None:
            log.warning("subscription %s waits for plan version %s", record.id, version)
            return False
        before = replace(sub, plan_code=code)
        canceled = life.cancel_at is None and record.status is SubscriptionStatus.CANCELED
        self.calendar.apply(Change(sub.start_at, record.revision - 1, before, plan, canceled))
        return True

    def due_scheduled(self) -> list[SubscriptionRecord]:
        """Scheduled revisions whose instant the clock reached."""
        now = self.clock.now()
        return [r for r in self.scheduled.values() if not r.lifecycle.pending(now)]

    # -- usage ---------------------------------------------------------------------------------------
    def _ends(self, topic: str) -> list[TopicPartition]:
        metadata = self.offsets.list_topics(topic, timeout=30).topics[topic]
        return [
            TopicPartition(topic, p, self.offsets.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1])
            for p in metadata.partitions
        ]

    def usage_caught_up(self) -> bool:
        """Wait until the usage worker committed what was produced before now and the sink wrote
        it; False when that took longer than ``wait_s`` (the close is retried later)."""
        deadline = time.monotonic() + self.settings.wait_s
        ends = self._ends(self.settings.topic(USAGE_EVENTS))
        while True:
            committed = self.offsets.committed([TopicPartition(e.topic, e.partition) for e in ends], timeout=30)
            if all(c.offset >= e.offset or e.offset == 0 for c, e in zip(committed, ends, strict=True)):
                break
            if time.monotonic() > deadline:
                return False
            self.sink.run_once()
        outputs = [tp for t in (USAGE_ACCEPTED, USAGE_WINDOWS) for tp in self._ends(self.settings.topic(t))]
        while True:
            self.sink.run_once()
            # the sink commits after each write: its committed offsets say what is in the store (a
            # restarted sink has no position on a partition until it fetches something new there)
            committed = self.sink.consumer.committed([TopicPartition(e.topic, e.partition) for e in outputs], 30)
            if all(c.offset >= e.offset or e.offset == 0 for c, e in zip(committed, outputs, strict=True)):
                return True
            if time.monotonic() > deadline:
                return False

    def refresh_running(self) -> None:
        """Re-rate the open periods of subscriptions with new usage or a new period; drop the
        running result of one whose subscription ended (a closed period is never served as current)."""
        if self.calendar.moved:  # cycles change only through the calendar, which notes them here
            every = self.calendar.cycles.values()
            self.metrics.open_periods.set(sum(1 for cycle in every if cycle.period is not None))
        self.touched |= self.calendar.moved
        self.calendar.moved.clear()
        if not self.touched:
            return
        cycles = []
        for sub in sorted(self.touched):
            cycle = self.calendar.cycles.get(sub)
            if cycle is None or cycle.period is None:
                self.agent.current.pop(sub, None)
            else:
                cycles.append(cycle)
        self.touched.clear()
        try:
            self.agent.refresh(cycles, self.clock.now())
        except BillingError as error:
            log.warning("running results not refreshed: %s", error)

    # -- the clock -----------------------------------------------------------------------------------
    def close_due(self) -> int:
        """Hand every due period over to the invoice worker; returns how many were."""
        now = self.clock.now()
        self.waiting += self.calendar.due(now) + self.calendar.late_due(now)
        if not self.waiting:
            return 0
        with self.metrics.close_seconds.time():  # passes with periods due only, not every loop turn
            return self._hand_over()

    def _hand_over(self) -> int:
        """``close_due`` once periods wait: the pipeline caught up, rate and publish them."""
        if not self.usage_caught_up():
            log.warning("%d periods due, but the usage pipeline is behind; retrying", len(self.waiting))
            self.metrics.behind.inc()
            self.metrics.waiting.set(len(self.waiting))
            return 0
        ready: list[ClosedPeriod] = []
        later: list[ClosedPeriod] = []
        for closed in self.waiting:
            (ready if closed.subscription.tenant_id in self.catalog.terms else later).append(closed)
        self.agent.prefetch([c for c in ready if not c.is_adjustment])
        handed = []
        for closed in ready:
            due_at = closed.period.end + self.settings.grace_period
            if closed.is_adjustment:  # an ended subscription's cycle reached a boundary
                if closed.subscription.id not in self.late_checks:
                    continue  # nothing written for it since its last check
                self.late_checks.discard(closed.subscription.id)
                rating = self.agent.rate(closed, due_at, late_periods=None)
                if not rating.late_usage:
                    continue  # no late usage changed a billed period: no invoice
            else:
                rating = self.agent.rate(closed, due_at, late_periods=None)
            self.agent.publish(rating)
            self.calendar.handed(closed)
            handed.append(closed)
            kind = "adjustment" if closed.is_adjustment else "period"
            self.metrics.handed.labels(tenant=closed.subscription.tenant_id, kind=kind).inc()
        self.log.record(self.calendar, sorted({c.subscription.id for c in handed}))
        self.waiting = later
        self.metrics.waiting.set(len(later))
        self.handed += len(handed)
        return len(handed)

    def run_once(self) -> None:
        self._apply([*self.catalog.poll(), *self.due_scheduled()])
        self.sink.run_once()
        self.end_used_up_trials()
        self.close_due()
        self.refresh_running()
        self.metrics.running_results.set(len(self.agent.current))
        self.metrics.last_loop.set(wall_ms() / 1000)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.start()
        run_until_stopped(self, should_stop)

    def close(self) -> None:
        self.sink.close()
        self.catalog.close()
        self.offsets.close()
