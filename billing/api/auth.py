"""The rule every served RPC obeys: a caller presents ``authorization: Bearer KEY`` and sees only
its key's tenant. Health checks and reflection stay open (load balancers and grpcurl use them
without a key).

The interceptor only wraps handlers; the key is checked when the wrapped handler runs, on the
server's worker threads (gRPC calls interceptors on the thread that polls for calls, where a
database read would hold up every other call). The handler then reads its caller's tenant with
:func:`caller_tenant` (a context variable set for the length of the call).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import grpc

from billing.api.keys import bearer_key

OPEN_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)
"""Services served without a key."""

Authenticate = Callable[[str | None], str | None]
"""The tenant a presented key (None: no key) speaks for, None when it speaks for nobody."""

_TENANT: ContextVar[str | None] = ContextVar("billing_api_tenant", default=None)


def caller_tenant() -> str | None:
    """The tenant of the current call's key; None outside an authenticated call."""
    return _TENANT.get()


def _service(method: str) -> str:
    return method.split("/")[1] if method.count("/") == 2 else method


class TenantAuth(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call without a valid, unrevoked key (UNAUTHENTICATED) and runs the others with
    :func:`caller_tenant` set to the key's tenant."""

    def __init__(self, authenticate: Authenticate) -> None:
        self.authenticate = authenticate

    def _guard(self, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def guarded(request: Any, context: Any) -> Any:
            tenant = self.authenticate(bearer_key(context.invocation_metadata()))
            if tenant is None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization: a valid 'Bearer KEY' is required")
            token = _TENANT.set(tenant)
            try:
                return behavior(request, context)
            finally:
                _TENANT.reset(token)

        return guarded

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or _service(details.method) in OPEN_SERVICES:
            return handler
        kinds = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        return handler._replace(
            **{kind: self._guard(getattr(handler, kind)) for kind in kinds if getattr(handler, kind) is not None}
        )
