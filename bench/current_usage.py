"""Benchmark: current-usage query latency for a subscription with 10M events in its open period,
served by the rating agent's running RatingResult over gRPC (``RatingService.GetCurrentRating``).

Usage is loaded as ``bench/billing_run.py`` loads it for its latency read (its
``load_latency_usage``, imported: 10M raw ``api_calls`` events over 25 days of February and their
15-minute windows, by SQL into the store's tables). Then, in one run:

1. **refresh**: ``RatingAgent.refresh`` re-rates the subscription's open period (February) from the
   store, the cost the agent pays on every sink write of the subscription's usage (one store read
   of the period, pricing of the plan's three metered meters);
2. **served**: a ``RatingServer`` answers ``GetCurrentRating`` from ``agent.current`` and a real
   gRPC client on a TCP channel asks ``--reads`` times, one call after another: p50/p99;
3. **served while re-rating**: the same, while another thread refreshes the agent in a loop (a sink
   writing this subscription's usage without pause, the worst case for the reader);
4. **baseline**: what a client pays without the agent, the direct store read of the usage so far
   (``StoreUsageReader.quantities`` over ``[period start, just after the last event)``, the read
   ``bench/billing_run.py`` measures), ``--baseline-reads`` times.

The served result is checked against a plain SQL sum of the raw events and against the agent's
own result. The rating agent's Kafka producer is only for publishing final results, which this
benchmark never does; it is closed at once so that no broker is needed (librdkafka would retry
the connection every few ms).

Usage: python bench/current_usage.py [--events 10000000] [--reads 2000] [--baseline-reads 100]
       [--refreshes 10] [--skip-contended]
CLICKHOUSE_URL uses a server instead of embedded chDB.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
from billing_run import METRICS, OPEN_START, PLAN, load_latency_usage  # bench/billing_run.py, the same loader

from billing.api.rating_service import RatingServer, rating_result_message
from billing.rate.agent import RatingAgent
from billing.stores import clickhouse_where, open_usage_store
from billing.usage_reader import StoreUsageReader
from invoicing.engine.subscriptions import Subscription, open_cycle
from invoicing.engine.terms import BillingTerms
from invoicing.ledger.memory import MemoryLedger
from invoicing.ports import UsageRequest
from rating.periods import from_epoch_ms
from schemas.generated.smallbiznis.rating.v1 import rating_pb2, rating_pb2_grpc

TENANT = "latency"


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], ms[-1]


def timed(action: Callable[[], Any], times: int, warmup: int = 0) -> list[float]:
    for _ in range(warmup):
        action()
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def describe(seconds: list[float]) -> str:
    p50, p99, worst = percentiles(seconds)
    return f"{len(seconds)} calls: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the open period")
    parser.add_argument("--reads", type=int, default=2000, help="GetCurrentRating calls per measurement")
    parser.add_argument("--baseline-reads", type=int, default=100, help="direct store reads")
    parser.add_argument("--refreshes", type=int, default=10, help="timed agent refreshes")
    parser.add_argument("--skip-contended", action="store_true", help="no measurement while re-rating")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-current-usage-") as tmp:
        started = time.perf_counter()
        store = open_usage_store(Path(tmp))
        print(
            f"store: ClickHouse {clickhouse_where(Path(tmp))} (opened in {time.perf_counter() - started:.1f} s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        try:
            run(store, args)
        finally:
            store.client.close()


def run(store: Any, args: argparse.Namespace) -> None:
    subscription_id = f"latency_{secrets.token_hex(4)}"
    started = time.perf_counter()
    step, last_ms = load_latency_usage(SimpleNamespace(usage=store), subscription_id, args.events)  # type: ignore[arg-type]
    print(f"setup: {args.events:,} events and their 15-minute windows in {time.perf_counter() - started:.1f} s")
    expected = store.client.query(
        f"SELECT sum(value), count() FROM {store.db}.usage_events FINAL WHERE subscription_id = '{subscription_id}'"
    ).result_rows[0]
    assert expected[1] == args.events, expected

    # -- the agent's running result: refreshed from the store, as on every sink write ----------------
    terms = BillingTerms(TENANT, {m.code: m for m in METRICS})
    cycle = open_cycle(Subscription(subscription_id, TENANT, PLAN.code, OPEN_START), PLAN)
    assert cycle.period is not None and cycle.period.end > from_epoch_ms(last_ms)
    agent = RatingAgent("127.0.0.1:9", StoreUsageReader(store), MemoryLedger(), terms)
    agent.producer.close()  # never publishes here (see the docstring)
    at = from_epoch_ms(last_ms + 1)
    refresh = timed(lambda: agent.refresh([cycle], at), args.refreshes, warmup=1)
    print(
        f"agent refresh (store read of the open period {cycle.period.start:%Y-%m-%d}–{cycle.period.end:%Y-%m-%d} "
        f"+ pricing, paid per sink write): {describe(refresh)}"
    )
    result = agent.current[subscription_id]
    calls = result.item("api_calls")
    assert calls is not None and calls.quantity == expected[0], (calls, expected)

    # -- served over gRPC ----------------------------------------------------------------------------
    server = RatingServer(agent.current.get, tenant_of=lambda _: TENANT)
    port = server.start(0, "127.0.0.1")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = rating_pb2_grpc.RatingServiceStub(channel)
        request = rating_pb2.GetCurrentRatingRequest(subscription_id=subscription_id)
        served = stub.GetCurrentRating(request, timeout=10)
        assert served.result == rating_result_message(agent.current[subscription_id], TENANT)
        assert Decimal(served.result.items[0].quantity) == expected[0]
        print(
            f"served: api_calls {served.result.items[0].quantity} = SQL sum of the {args.events:,} raw events; "
            f"amount {served.result.items[0].amount.units} {served.result.items[0].amount.currency_code} minor units"
        )
        idle = timed(lambda: stub.GetCurrentRating(request, timeout=10), args.reads, warmup=50)
        print(f"GetCurrentRating over gRPC (TCP, one client, sequential): {describe(idle)}  (aim: p99 < 50 ms)")

        contended: list[float] = []
        if not args.skip_contended:
            stop = threading.Event()
            refreshes = 0

            def refresh_loop() -> None:
                nonlocal refreshes
                while not stop.is_set():
                    agent.refresh([cycle], at)
                    refreshes += 1

            writer = threading.Thread(target=refresh_loop, daemon=True)
            writer.start()
            try:
                contended = timed(lambda: stub.GetCurrentRating(request, timeout=10), args.reads)
            finally:
                stop.set()
                writer.join()
            what = f"GetCurrentRating while the agent re-rates without pause ({refreshes} refreshes)"
            print(f"{what}: {describe(contended)}")
    finally:
        channel.close()
        server.stop(0)

    # -- baseline: the direct store read a client pays without the agent --------------------------------
    reader = StoreUsageReader(store)
    metric = METRICS[0]
    rng = random.Random(args.seed)

    def direct_read() -> None:
        b_ms = last_ms + 1 + rng.randrange(max(1, step - 1))  # mid-bucket "now": the raw right edge is read
        request = UsageRequest(subscription_id, metric.code, metric.aggregation, OPEN_START, from_epoch_ms(b_ms))
        (quantity,) = reader.quantities([request])
        assert quantity == expected[0]

    baseline = timed(direct_read, args.baseline_reads, warmup=5)
    print(f"baseline, direct store read of the usage so far (no agent): {describe(baseline)}")

    p50, p99, _ = percentiles(idle)
    b50, b99, _ = percentiles(baseline)
    print(f"served / baseline: p50 {p50 / b50:.4f} ({b50 / p50:,.0f}× faster), p99 {p99 / b99:.4f} ({b99 / p99:,.0f}×)")
    if contended:
        c50, c99, _ = percentiles(contended)
        print(f"served while re-rating / baseline: p50 {c50 / b50:.4f}, p99 {c99 / b99:.4f}")


if __name__ == "__main__":
    main()
