"""``smallbiznis.usage.v1.UsageService`` reads in ``billing serve``: the tenant's metrics, and usage
summaries of the caller's subscription read through the same ``UsageReader`` as rating.

``GetUsageSummary`` walks the windows of the pipeline's roll-ups (``rollup_windows``: the local
hour, day or month of the subscription's timezone), clipped to ``[start_time, end_time)``, and asks
each window's quantity with the metric's own aggregation, and its distinct events with COUNT:
exactly what rating that window would read (deduplicated, any instants). Not served yet:
``IngestUsage`` (Kafka) and ``ListUsage`` (no paged read of the stored events behind a port yet).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from billing.api import wire
from billing.api.usage_access import unavailable
from invoicing.ports import Ledger, UsageReader, UsageRequest
from rating.catalog import Aggregation, Metric
from rating.errors import InvalidValue
from rating.numbers import format_decimal
from rating.periods import epoch_ms, from_epoch_ms
from schemas.generated.smallbiznis.usage.v1 import usage_pb2, usage_pb2_grpc
from streams.operators.windows import Granularity, rollup_windows

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


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, ledger: Ledger, usage: UsageReader | None, problem: str) -> None:
        self.ledger = ledger
        self.usage = usage
        self.problem = problem

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

    def GetUsageSummary(
        self, request: usage_pb2.GetUsageSummaryRequest, context: Any
    ) -> usage_pb2.GetUsageSummaryResponse:
        tenant = wire.tenant(context, request.tenant_id)
        if not request.subscription_id:
            wire.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "subscription_id: is required")
        with self.ledger.session() as session:
            record = session.get_subscription(request.subscription_id)
            plan = None
            if record is not None and record.subscription.tenant_id == tenant:
                plan = session.get_plan(tenant, record.subscription.plan_code, record.plan_version)
        if record is None or plan is None:
            wire.abort(
                context, grpc.StatusCode.NOT_FOUND, f"subscription_id: no subscription {request.subscription_id!r}"
            )
        metrics = self._metrics(tenant)
        with wire.errors_as_status(context):
            codes = list(request.metric_codes) or [m.metric_code for m in plan.meters if m.is_metered]
            for index, code in enumerate(codes):
                if code not in metrics:
                    raise InvalidValue(f"metric_codes[{index}]", f"no metric {code!r}")
            for name in ("start_time", "end_time"):
                if not request.HasField(name):
                    raise InvalidValue(name, "is required")
            start = wire.instant(request.start_time, "start_time")
            end = wire.instant(request.end_time, "end_time")
            if end <= start:
                raise InvalidValue("end_time", "must be after start_time")
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
        wire.tenant(context)
        wire.abort(context, grpc.StatusCode.UNIMPLEMENTED, "IngestUsage: not served yet; use the SDK's producer")

    def ListUsage(self, request: usage_pb2.ListUsageRequest, context: Any) -> usage_pb2.ListUsageResponse:
        wire.tenant(context, request.tenant_id)
        wire.abort(
            context,
            grpc.StatusCode.UNIMPLEMENTED,
            "ListUsage: not served yet (no paged read of the stored events through the API's ports)",
        )
