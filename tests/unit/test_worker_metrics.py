"""The usage worker counts each dead letter it writes under its reason, so a dashboard can chart
dead letters by reason and an alert can fire on their growth without reading usage.dlq."""

from __future__ import annotations

from typing import Any

import pytest

from streams.aggregate.settings import WorkerSettings
from streams.aggregate.worker import BatchOutputs, SourceMessage, UsageWorker
from streams.metrics import WorkerMetrics
from streams.operators.records import Reason, Rejection

pytestmark = pytest.mark.unit


class _App:
    """Just enough of a Faust app for the worker's constructor: no broker is reached."""

    def topic(self, *args: Any, **kwargs: Any) -> object:
        return object()


def test_each_dead_letter_is_counted_under_its_reason() -> None:
    metrics = WorkerMetrics()
    worker = UsageWorker(_App(), WorkerSettings("localhost:1", 1), {}, lambda: 0, metrics)  # type: ignore[arg-type]
    out = BatchOutputs()
    message = SourceMessage(0, 7, b"s1", b"\x00junk", None)
    worker.reject(out, Rejection(Reason.UNDECODABLE, "not Avro"), message, None, None, 0)
    worker.reject(out, Rejection(Reason.NEGATIVE_VALUE, "below 0", "value"), message, 0, None, 0)
    worker.reject(out, Rejection(Reason.NEGATIVE_VALUE, "below 0", "value"), message, 1, None, 0)

    assert len(out.letters) == 3
    counted = {r.value: metrics.dead_letters.labels(reason=r.value)._value.get() for r in Reason}
    assert counted == {r.value: {"undecodable": 1, "negative_value": 2}.get(r.value, 0) for r in Reason}
