"""``billing produce``: usage events onto ``usage.events``, from a file or a generator, one per
message or in batches, with a progress bar and a summary.

    billing produce --file events.jsonl --batch 100
    billing produce --generate 1000000 --subscriptions 1000 --seed 7 --duplicates 0.05 --batch 200
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from billing.clock import monotonic
from billing.simulate.documents import parse_json, parse_yaml, read_text
from billing.simulate.scenario import ScenarioEvent
from billing.simulate.scenario_file import parse_event
from billing.streaming import bootstrap_servers
from rating.errors import InvalidValue
from rating.periods import epoch_ms
from streams.generate import DAY_MS, generate
from streams.ingest.producer import DeliveryError, UnknownTopicError, UsageProducer
from streams.kafka.topics import USAGE_EVENTS, ensure_topics
from streams.operators.records import UsageEvent

EXIT_NOT_DELIVERED = 3
PROGRESS_EVERY = 1000


@dataclass(frozen=True, slots=True)
class Summary:
    events: int
    messages: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / max(self.seconds, 1e-9)

    def __str__(self) -> str:
        return (
            f"{self.events:,} events in {self.messages:,} messages, {self.seconds:.2f}s: "
            f"{self.events_per_second:,.0f} events/s"
        )


def _raw_events(path: Path) -> tuple[list[Any], str | None]:
    """The raw event mappings of a JSON-lines file, a YAML/JSON list, or a scenario file's
    ``events``; and the file's ``tenant_id``, if it names one."""
    content = read_text(path, "file")
    if path.suffix in (".jsonl", ".ndjson"):
        raw: list[Any] = []
        for number, line in enumerate(content.splitlines(), 1):
            if line.strip():
                try:
                    raw.append(parse_json(line))
                except json.JSONDecodeError as error:
                    raise InvalidValue("file", f"{path} line {number} is not JSON: {error}") from None
        return raw, None
    try:
        loaded: Any = parse_json(content) if path.suffix == ".json" else parse_yaml(content)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InvalidValue(
            "file", f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("events"), list):
        tenant = loaded.get("tenant_id")
        return loaded["events"], tenant if isinstance(tenant, str) else None
    if isinstance(loaded, list):
        return loaded, None
    raise InvalidValue("file", f"{path}: expected a list of events, JSON lines, or a scenario with events")


def file_events(path: Path, tenant_id: str = "t1") -> list[UsageEvent]:
    """The events of ``path`` in the scenario event shape (``billing/simulate/scenario_file.py``), in
    arrival order (``arrives_at``, then file order). Bad fields raise InvalidValue naming
    ``events[i].field``; values the pipeline rejects (NaN, unknown codes, empty keys) are kept."""
    raw, tenant = _raw_events(path)
    parsed: list[ScenarioEvent] = [
        parse_event(item, f"events[{i}]", i, tenant or tenant_id) for i, item in enumerate(raw)
    ]
    parsed.sort(key=lambda e: e.arrives_at)
    return [e.usage_event() for e in parsed]


def generated_events(args: argparse.Namespace) -> Iterator[UsageEvent]:
    width = max(5, len(str(args.subscriptions - 1)))
    return generate(
        args.generate,
        [f"sub_{n:0{width}d}" for n in range(args.subscriptions)],
        args.metrics.split(","),
        tenant_id=args.tenant,
        start_ms=epoch_ms(datetime.fromisoformat(args.start)),
        span_ms=round(args.span_days * DAY_MS),
        duplicate_rate=args.duplicates,
        conflict_rate=args.conflicts,
        out_of_order_rate=args.out_of_order,
        invalid_rate=args.invalid,
        seed=args.seed,
    )


def produce(events: Iterable[UsageEvent], total: int, producer: UsageProducer, console: Console) -> Summary:
    """Send ``events`` (``total`` of them, for the bar) and wait for every acknowledgement."""
    started = monotonic()
    with Progress(
        TextColumn("producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as bar:
        task = bar.add_task("events", total=total)
        sent = 0
        for event in events:
            producer.send(event)
            sent += 1
            if sent % PROGRESS_EVERY == 0:
                bar.update(task, completed=sent)
        producer.flush()
        bar.update(task, completed=sent)
    return Summary(sent, producer.sent_messages, monotonic() - started)


def run_produce(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    bootstrap = bootstrap_servers(args.bootstrap)
    if args.batch < 1:
        raise InvalidValue("batch", f"must be at least 1, got {args.batch}")
    if args.partitions:
        ensure_topics(bootstrap, args.partitions, topics=[args.topic])
    if args.file:
        events: Iterable[UsageEvent] = file_events(Path(args.file), args.tenant)
        total = len(events)  # type: ignore[arg-type]  # a list
    else:
        if args.subscriptions < 1:
            raise InvalidValue("subscriptions", f"must be at least 1, got {args.subscriptions}")
        try:
            events, total = generated_events(args), args.generate
        except ValueError as error:
            raise InvalidValue("generate", str(error)) from None
    try:
        producer = UsageProducer(bootstrap, args.topic, batch_size=args.batch)
        summary = produce(events, total, producer, console)
    except (UnknownTopicError, DeliveryError) as error:
        console.print(f"[red]error:[/red] {error}")
        return EXIT_NOT_DELIVERED
    print(summary)
    return 0


def add_produce_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``billing produce`` on the CLI's subcommands."""
    p = commands.add_parser("produce", help="send usage events to Kafka (from a file or a generator)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--file", help="events in the scenario event shape: JSON lines (.jsonl), a YAML/JSON list, or a scenario"
    )
    source.add_argument("--generate", type=int, metavar="N", help="send N synthetic events (streams/generate.py)")
    p.add_argument("--subscriptions", type=int, default=1000, metavar="M", help="with --generate: sub_00000 …")
    p.add_argument("--metrics", default="api_calls", help="with --generate: comma-separated metric codes")
    p.add_argument("--seed", type=int, default=1, help="with --generate: the same seed sends the same events")
    p.add_argument("--duplicates", type=float, default=0.05, help="with --generate: fraction of exact duplicates")
    p.add_argument("--conflicts", type=float, default=0.0, help="with --generate: fraction of idempotency conflicts")
    p.add_argument("--out-of-order", type=float, default=0.0, help="with --generate: fraction recorded late")
    p.add_argument("--invalid", type=float, default=0.0, help="with --generate: fraction the pipeline rejects")
    p.add_argument("--start", default="2026-01-01T00:00:00+00:00", help="with --generate: first event time")
    p.add_argument("--span-days", type=float, default=30.0, help="with --generate: event times spread over this")
    p.add_argument("--tenant", default="t1", help="tenant of generated events and of file events naming none")
    p.add_argument("--batch", type=int, default=1, metavar="K", help="events per Kafka message (1: one per message)")
    p.add_argument("--topic", default=USAGE_EVENTS)
    p.add_argument("--partitions", type=int, default=0, help="create the topic if missing, with this many partitions")
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    p.set_defaults(run=run_produce)
