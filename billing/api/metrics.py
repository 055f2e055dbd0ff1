"""Prometheus metrics of ``billing serve``. The names are the ones gRPC users already chart and
alert on (go-grpc-prometheus: ``grpc_server_started_total``, ``grpc_server_handled_total`` by
code, ``grpc_server_handling_seconds``).

The interceptor wraps handlers, as TenantAuth does. The clock starts and the code is read when
the handler runs, on the worker threads; an aborted call counts with the code it was aborted
with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

UNARY = "unary"
"""The ``grpc_type`` of every served RPC; streams (only reflection's) pass through unmeasured."""


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started", "RPCs started on the server", labels, registry=self.registry)
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code",
            [*labels, "grpc_code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the handler's start to its answer",
            labels,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )


def _names(method: str) -> tuple[str, str]:
    """(service, method) of ``/package.Service/Method``."""
    _, service, name = [*method.split("/"), "", ""][:3]
    return service, name


class ApiMetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call. Install it before TenantAuth, so that it also sees the calls
    refused for a missing key."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def _measured(self, grpc_type: str, service: str, method: str, behavior: Callable[[Any, Any], Any]) -> Any:
        metrics = self.metrics

        def measured(request: Any, context: Any) -> Any:
            metrics.started.labels(grpc_type, service, method).inc()
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                answer = behavior(request, context)
                code = context.code() or grpc.StatusCode.OK
                return answer
            except Exception:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                metrics.seconds.labels(grpc_type, service, method).observe(time.perf_counter() - started)
                metrics.handled.labels(grpc_type, service, method, code.name).inc()

        return measured

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, method = _names(details.method)
        return handler._replace(unary_unary=self._measured(UNARY, service, method, handler.unary_unary))
