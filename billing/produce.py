"""``billing produce``: usage events onto ``usage.events``, from a scenario file or a generator,
one per message or in batches, with a progress bar and a summary."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from billing.clock import monotonic
from billing.streaming import bootstrap_servers
from rating.periods import epoch_ms
from streams.generate import generate
from streams.kafka.producer import UsageProducer, ensure_topics
from streams.operators.records import UsageEvent


def scenario_events(path: Path) -> list[UsageEvent]:
    from billing.simulate.scenario import load_scenario

    return [
        UsageEvent(
            e.id,
            e.tenant_id,
            e.subscription_id,
            e.metric_code,
            e.value,
            epoch_ms(e.recorded_at),
            e.idempotency_key,
            dict(e.metadata),
        )
        for e in load_scenario(path).events
    ]


def produce(
    events: Iterable[UsageEvent], total: int, bootstrap: str, batch: int, console: Console
) -> tuple[int, float]:
    producer = UsageProducer(bootstrap, batch_size=batch)
    started = monotonic()
    sent = 0
    with Progress(
        TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("events", total=total)
        for event in events:
            producer.send(event)
            sent += 1
            if sent % 5000 == 0:
                bar.update(task, completed=sent)
        producer.flush()
        bar.update(task, completed=sent)
    return sent, monotonic() - started


def run_produce(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    bootstrap = bootstrap_servers(args.bootstrap)
    if args.partitions:
        ensure_topics(bootstrap, args.partitions)
    if args.file:
        events: Iterable[UsageEvent] = scenario_events(Path(args.file))
        total = len(events)  # type: ignore[arg-type]
    else:
        subs = [f"sub_{n:05d}" for n in range(args.subscriptions)]
        metrics = args.metrics.split(",")
        start = epoch_ms(datetime.fromisoformat(args.start))
        events, total = (
            generate(args.generate, subs, metrics, tenant_id=args.tenant, start_ms=start, seed=args.seed),
            args.generate,
        )
    sent, seconds = produce(events, total, bootstrap, args.batch, console)
    console.print(f"{sent:,} events in {seconds:.2f}s: {sent / max(seconds, 1e-9):,.0f} events/s (batch {args.batch})")
    return 0


def add_produce_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    produce_ = commands.add_parser("produce", help="send usage events to Kafka (from a scenario file or a generator)")
    source = produce_.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="a scenario file whose events to send")
    source.add_argument("--generate", type=int, help="send this many synthetic events (5%% exact duplicates)")
    produce_.add_argument("--subscriptions", type=int, default=1000, help="with --generate: sub_00000 …")
    produce_.add_argument("--metrics", default="api_calls", help="with --generate: comma-separated metric codes")
    produce_.add_argument("--tenant", default="t1")
    produce_.add_argument("--start", default="2026-01-01T00:00:00+00:00", help="with --generate: first event time")
    produce_.add_argument("--seed", type=int, default=1)
    produce_.add_argument("--batch", type=int, default=1, help="events per Kafka message (1: one per message)")
    produce_.add_argument("--partitions", type=int, default=0, help="create missing topics with this many partitions")
    produce_.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)"
    )
    produce_.set_defaults(run=run_produce)
