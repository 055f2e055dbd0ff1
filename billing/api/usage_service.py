"""``smallbiznis.usage.v1.UsageService`` reads in ``billing serve``: the tenant's metrics, and usage
summaries of the caller's subscription read through the same ``UsageReader`` as rating.

``GetUsageSummary`` walks the windows of the pipeline's roll-ups (``rollup_windows``: the local
hour, day or month of the subscription's timezone), clipped to ``[start_time, end_time)``, and asks
each window's quantity with the metric's own aggregation, and its distinct events with COUNT:
exactly what rating that window would read (deduplicated, any instants). ``ListUsage`` pages the
distinct stored events (``EventLog``) by (recorded_at, metric_code, idempotency_key).
``IngestUsage`` takes one event or a batch through the SDK's checks and producer (``UsageRecorder``):
every event is checked before any is sent, and the call answers once Kafka acknowledged them all
(acks=all); without a broker it is UNAVAILABLE and says how to start one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from billing.api import wire
from billing.api.ingest import NO_BROKER, BrokerUnavailable, UsageInput, UsageRecorder
from billing.api.owned import owned_subscription
from billing.api.paging import decode_token, encode_token, page_size
from billing.api.usage_access import unavailable
from invoicing.ports import Ledger, SubscriptionRecord, UsageReader, UsageRequest
from rating.catalog import Aggregation, Metric, Plan
from rating.errors import InvalidValue
from rating.numbers import decimal_from_double, format_decimal
from rating.periods import epoch_ms, from_epoch_ms
from schemas.generated.smallbiznis.usage.v1 import usage_pb2, usage_pb2_grpc
from streams.operators.windows import Granularity, rollup_windows
from streams.ports import EventLog, StoredEvent

MAX_INGEST = 10_000
"""Events one IngestUsage call takes at most (the request is also capped at 1 MiB)."""
MAX_WINDOWS = 10_000
"""Windows × metrics one summary answers at most (a year of hours is 8,760)."""
_INDEX = {Granularity.HOUR: 1, Granularity.DAY: 2, Granularity.MONTH: 3}


def metric_message(metric: Metric) -> usage_pb2.UsageMetricDefinition:
    return usage_pb2.UsageMetricDefinition(
        code=metric.code,
        type=f"METRIC_TYPE_{metric.type.value}",
        unit=metric.unit,
        aggregation=f"AGGREGATION_{metric.aggregation.value}",
        field=metric.field or "",
    )


def windows(start: datetime, end: datetime, granularity: str, timezone: str) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at the local window boundaries of ``granularity`` ("" : uncut)."""
    if not granularity:
        return [(start, end)]
    try:
        index = _INDEX[Granularity(granularity)]
    except (ValueError, KeyError):
        raise InvalidValue("granularity", f"must be hour, day, month or empty, got {granularity!r}") from None
    cuts, at = [], epoch_ms(start)
    while at < epoch_ms(end):
        _, window_start, window_end = rollup_windows(at, timezone)[index]
        cuts.append((from_epoch_ms(max(window_start, at)), from_epoch_ms(min(window_end, epoch_ms(end)))))
        if len(cuts) > MAX_WINDOWS:
            raise InvalidValue("end_time", f"more than {MAX_WINDOWS} windows; ask a coarser granularity")
        at = window_end
    return cuts


def _interval(request: Any) -> tuple[datetime, datetime]:
    """The request's required ``[start_time, end_time)``."""
    for name in ("start_time", "end_time"):
        if not request.HasField(name):
            raise InvalidValue(name, "is required")
    start = wire.instant(request.start_time, "start_time")
    end = wire.instant(request.end_time, "end_time")
    if end <= start:
        raise InvalidValue("end_time", "must be after start_time")
    return start, end


def _record(event: StoredEvent) -> usage_pb2.UsageRecord:
    return usage_pb2.UsageRecord(
        id=event.event_id,
        tenant_id=event.tenant_id,
        subscription_id=event.subscription_id,
        metric_code=event.metric_code,
        value=float(event.value),  # the wire's double; the stored value is exact to 12 places
        recorded_at=wire.timestamp(from_epoch_ms(event.recorded_at_ms)),
        idempotency_key=event.idempotency_key,
        metadata=dict(event.metadata),
    )


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    def __init__(
        self,
        ledger: Ledger,
        usage: UsageReader | None,
        events: EventLog | None,
        problem: str,
        recorder: UsageRecorder | None = None,
    ) -> None:
        self.ledger = ledger
        self.usage = usage
        self.events = events
        self.problem = problem
        self.recorder = recorder

    def _metrics(self, tenant: str) -> dict[str, Metric]:
        with self.ledger.session() as session:
            record = session.get_terms(tenant)
        return {} if record is None else dict(record.terms.metrics)

    def ListUsageMetrics(
        self, request: usage_pb2.ListUsageMetricsRequest, context: Any
    ) -> usage_pb2.ListUsageMetricsResponse:
        """The tenant's metrics (its terms), by code."""
        metrics = self._metrics(wire.tenant(context, request.tenant_id))
        return usage_pb2.ListUsageMetricsResponse(metrics=[metric_message(metrics[c]) for c in sorted(metrics)])

    def _subscription(self, context: Any, tenant: str, subscription_id: str) -> tuple[SubscriptionRecord, Plan]:
        """The caller's subscription and its plan; NOT_FOUND for another tenant's."""
        owned = owned_subscription(context, self.ledger, tenant, subscription_id)
        return owned.record, owned.plan

    def ListUsage(self, request: usage_pb2.ListUsageRequest, context: Any) -> usage_pb2.ListUsageResponse:
        """The subscription's distinct stored events in ``[start_time, end_time)``, by recorded_at."""
        tenant = wire.tenant(context, request.tenant_id)
        self._subscription(context, tenant, request.subscription_id)
        with wire.errors_as_status(context):
            limit = page_size(request.page_size)
            after = decode_token(request.page_token, (int, str, str))
            start, end = _interval(request)
            for name, at in (("start_time", start), ("end_time", end)):
                if at.microsecond % 1000:
                    raise InvalidValue(name, "is finer than a millisecond (events are stored to the millisecond)")
        if self.events is None:
            unavailable(context, self.problem)
        cursor = None if after is None else (int(after[0]), str(after[1]), str(after[2]))
        found = self.events.events(
            request.subscription_id, request.metric_code or None, epoch_ms(start), epoch_ms(end), cursor, limit + 1
        )
        token = encode_token(found[limit - 1].cursor) if len(found) > limit else ""
        return usage_pb2.ListUsageResponse(records=[_record(e) for e in found[:limit]], next_page_token=token)

    def GetUsageSummary(
        self, request: usage_pb2.GetUsageSummaryRequest, context: Any
    ) -> usage_pb2.GetUsageSummaryResponse:
        tenant = wire.tenant(context, request.tenant_id)
        record, plan = self._subscription(context, tenant, request.subscription_id)
        metrics = self._metrics(tenant)
        with wire.errors_as_status(context):
            codes = list(request.metric_codes) or [m.metric_code for m in plan.meters if m.is_metered]
            for index, code in enumerate(codes):
                if code not in metrics:
                    raise InvalidValue(f"metric_codes[{index}]", f"no metric {code!r}")
            start, end = _interval(request)
            cuts = windows(start, end, request.granularity, record.subscription.timezone)
            if len(cuts) * len(codes) > MAX_WINDOWS:
                raise InvalidValue("end_time", f"more than {MAX_WINDOWS} windows × metrics; ask fewer")
        reader = self.usage
        if reader is None:
            unavailable(context, self.problem)
        sub = request.subscription_id
        asked = [(metrics[code], a, b) for code in codes for a, b in cuts]
        requests = [
            UsageRequest(sub, m.code, agg, a, b) for m, a, b in asked for agg in (m.aggregation, Aggregation.COUNT)
        ]
        found = reader.quantities(requests)
        return usage_pb2.GetUsageSummaryResponse(
            aggregations=[
                usage_pb2.UsageAggregation(
                    tenant_id=tenant,
                    subscription_id=sub,
                    metric_code=metric.code,
                    total_value=format_decimal(found[2 * n]),
                    window_start=wire.timestamp(a),
                    window_end=wire.timestamp(b),
                    window_granularity=request.granularity,
                    aggregation=f"AGGREGATION_{metric.aggregation.value}",
                    event_count=int(found[2 * n + 1]),
                )
                for n, (metric, a, b) in enumerate(asked)
            ]
        )

    def IngestUsage(self, request: usage_pb2.IngestUsageRequest, context: Any) -> usage_pb2.IngestUsageResponse:
        """``record`` and ``records``, checked whole, then on Kafka with acks=all: accepted = durable."""
        tenant = wire.tenant(context)
        given = ([("record", request.record)] if request.HasField("record") else []) + [
            (f"records[{n}]", record) for n, record in enumerate(request.records)
        ]
        if not given:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "record: give record or records")
        if len(given) > MAX_INGEST:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"records: at most {MAX_INGEST} in one call")
        for _, record in given:
            wire.tenant(context, record.tenant_id)  # another tenant's: PERMISSION_DENIED
        named = {r.subscription_id for _, r in given if r.subscription_id}
        with self.ledger.session() as session:  # each subscription once: a batch is mostly one or a few
            owners = {subscription_id: session.get_subscription(subscription_id) for subscription_id in named}
        events = []
        with wire.errors_as_status(context):
            for field, record in given:
                owner = owners.get(record.subscription_id)
                if owner is not None and owner.subscription.tenant_id != tenant:
                    owner = None
                if record.subscription_id and owner is None:
                    wire.abort(
                        context,
                        grpc.StatusCode.NOT_FOUND,
                        f"{field}.subscription_id: no subscription {record.subscription_id!r}",
                    )
                if not record.HasField("recorded_at"):
                    raise InvalidValue(f"{field}.recorded_at", "is required")
                events.append(
                    UsageInput(
                        field,
                        tenant,
                        record.subscription_id,
                        record.metric_code,
                        decimal_from_double(record.value, f"{field}.value"),
                        wire.instant(record.recorded_at, f"{field}.recorded_at"),
                        record.idempotency_key,
                        dict(record.metadata),
                        record.id or None,
                    )
                )
        if self.recorder is None:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, NO_BROKER)
        try:
            with wire.errors_as_status(context):
                sent = self.recorder.record(events)
        except BrokerUnavailable as error:
            wire.abort(context, grpc.StatusCode.UNAVAILABLE, f"{error}; {NO_BROKER}")
        return usage_pb2.IngestUsageResponse(accepted_count=sent)
