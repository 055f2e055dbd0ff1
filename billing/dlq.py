"""``billing dlq``: list the dead letters, replay them after a fix, and keep them long enough.

    billing dlq list --reason unknown_subscription --since 7d
    billing dlq list --topic rating --json
    billing dlq replay --subscription sub_42 --dry-run
    billing dlq replay --offset 0:17,2:5
    billing dlq retention --days 730

A replay re-produces each selected letter's original message, byte for byte and under its key, to
the topic it was rejected from (``usage.events`` for ``usage.dlq``, ``rating.results`` for
``rating.dlq``); the pipeline validates and deduplicates it as any message (identity =
``subscription_id`` + ``idempotency_key``), so replaying twice changes nothing, and a letter whose
cause is not fixed yet is dead-lettered again.

Retention: the dead-letter topics keep a letter ``$BILLING_DLQ_RETENTION_DAYS`` days (default
365). Every command that creates the pipeline's topics (``billing worker``, ``billing invoicer``)
creates them so and raises a shorter retention of existing ones; ``billing dlq retention --days``
sets it exactly, also shorter (set the variable too, or the next worker start raises it again).

Exit status: 0 done, 1 Kafka unreachable or a replay not delivered, 2 a wrong argument or topic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from billing.dlq_retention import DAY_MS, RETENTION_ENV, dlq_retention_ms
from invoicing.engine.render import rfc3339_exact
from rating.errors import InvalidValue
from rating.periods import epoch_ms, from_epoch_ms
from streams.kafka.dlq import StoredLetter

EXAMPLES: Final = """\
examples:
  billing dlq list --reason unknown_subscription --since 7d
  billing dlq list --topic rating --json
  billing dlq replay --subscription sub_42 --dry-run
  billing dlq replay --offset 0:17,2:5
  billing dlq retention --days 730

exit status: 0 done, 1 Kafka unreachable or a replay not delivered, 2 a wrong argument or topic"""
EXIT_KAFKA: Final = 1
EXIT_INPUT: Final = 2

TOPICS: Final = {"usage": ("usage.dlq", "usage.events"), "rating": ("rating.dlq", "rating.results")}
"""``--topic`` → (dead-letter topic, the topic its letters were rejected from)."""

_AGO = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _days(ms: int) -> str:
    return "forever" if ms == -1 else f"{ms / DAY_MS:g} days"


def parse_time(text: str, now: datetime, name: str) -> int:
    """An RFC 3339 instant with an offset (``2026-03-01T00:00:00Z``) or an age before ``now``
    (``90m``, ``36h``, ``7d``, ``2w``), as epoch milliseconds."""
    ago = _AGO.match(text.strip())
    if ago:
        return epoch_ms(now - timedelta(seconds=int(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]))
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue(
            name, f"expected an RFC 3339 time (2026-03-01T00:00:00Z) or an age (36h, 7d): {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidValue(name, f"needs a UTC offset or Z: {text!r}")
    return epoch_ms(parsed.astimezone(UTC))


def parse_offsets(values: Iterable[str]) -> frozenset[tuple[int, int]]:
    """``--offset 0:17,2:5`` (repeatable): letters by their partition and offset in the DLQ topic."""
    found: set[tuple[int, int]] = set()
    for value in values:
        for item in value.split(","):
            partition, sep, offset = item.strip().partition(":")
            if not (sep and partition.isdigit() and offset.isdigit()):
                raise InvalidValue("--offset", f"expected PARTITION:OFFSET (e.g. 0:17), got {item.strip()!r}")
            found.add((int(partition), int(offset)))
    return frozenset(found)


def _split(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(item.strip() for value in values or () for item in value.split(",") if item.strip())


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters a command acts on; an empty set or None selects any. ``until_ms`` is
    exclusive, times are when the pipeline rejected the letter."""

    reasons: frozenset[str] = frozenset()
    subscriptions: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    offsets: frozenset[tuple[int, int]] = frozenset()

    @property
    def selects_all(self) -> bool:
        return self == LetterFilter()

    def matches(self, letter: StoredLetter) -> bool:
        return (
            (not self.reasons or letter.reason in self.reasons)
            and (not self.subscriptions or letter.subscription_id in self.subscriptions)
            and (self.since_ms is None or letter.failed_at_ms >= self.since_ms)
            and (self.until_ms is None or letter.failed_at_ms < self.until_ms)
            and (not self.offsets or (letter.partition, letter.offset) in self.offsets)
        )


def letter_filter(args: argparse.Namespace, now: datetime) -> LetterFilter:
    return LetterFilter(
        reasons=_split(args.reason),
        subscriptions=_split(args.subscription),
        since_ms=None if args.since is None else parse_time(args.since, now, "--since"),
        until_ms=None if args.until is None else parse_time(args.until, now, "--until"),
        offsets=parse_offsets(getattr(args, "offset", None) or ()),
    )


@dataclass(frozen=True, slots=True)
class Selection:
    letters: list[StoredLetter]
    """The matching letters, oldest first (the newest ``limit`` when limited)."""
    read: int
    matched: int
    reasons: dict[str, int]
    """Every letter read, by reason: what a filter that matched nothing could have asked for."""


def select(letters: Iterable[StoredLetter], where: LetterFilter, limit: int | None = None) -> Selection:
    """The letters ``where`` matches, in the order they failed, the newest ``limit`` of them."""
    read = 0
    reasons: dict[str, int] = {}
    matched: list[StoredLetter] = []
    for letter in letters:
        read += 1
        reasons[letter.reason] = reasons.get(letter.reason, 0) + 1
        if where.matches(letter):
            matched.append(letter)
    matched.sort(key=lambda x: (x.failed_at_ms, x.partition, x.offset))
    chosen = matched[-limit:] if limit else matched
    return Selection(chosen, read, len(matched), dict(sorted(reasons.items())))


def _key_text(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", "replace")


def letter_json(letter: StoredLetter) -> dict[str, Any]:
    out: dict[str, Any] = {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "timestamp": rfc3339_exact(from_epoch_ms(letter.failed_at_ms)),
        "reason": letter.reason,
        "field": letter.field,
        "detail": letter.detail,
        "subscription_id": letter.subscription_id,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "original_key": _key_text(letter.original_key),
        "original_size": letter.original_size,
        "original_truncated": letter.truncated,
        "event_index": letter.event_index,
    }
    if letter.extra:
        out["extra"] = dict(letter.extra)
    return out


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(topic: str, selection: Selection, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "partition",
        "offset",
        "failed at (UTC)",
        "reason",
        "field",
        "subscription",
        "source",
        "detail",
        title=title or topic,
    )
    for letter in selection.letters:
        table.add_row(
            str(letter.partition),
            str(letter.offset),
            from_epoch_ms(letter.failed_at_ms).strftime("%Y-%m-%d %H:%M:%S"),
            letter.reason,
            letter.field or "",
            letter.subscription_id or "",
            f"{letter.source_partition}@{letter.source_offset}" if letter.source_offset >= 0 else "",
            _short(letter.detail),
        )
    if selection.letters:
        Console(width=None if sys.stdout.isatty() else 200).print(table)


def _summary(topic: str, selection: Selection) -> str:
    shown = len(selection.letters)
    text = f"{shown:,} of {selection.read:,} dead letters in {topic}"
    if shown < selection.matched:
        text += f" ({selection.matched:,} match; --limit shows the newest)"
    if not selection.matched and selection.reasons:
        text += "; reasons present: " + ", ".join(f"{r} ({n:,})" for r, n in selection.reasons.items())
    return text


def _names(args: argparse.Namespace) -> tuple[str, str]:
    dlq, target = TOPICS[args.topic]
    return args.topic_prefix + dlq, args.topic_prefix + target


def _read(args: argparse.Namespace, where: LetterFilter, limit: int | None) -> tuple[str, Selection]:
    from billing.streaming import bootstrap_servers
    from streams.kafka.dlq import read_letters

    topic, _ = _names(args)
    return topic, select(read_letters(bootstrap_servers(args.bootstrap), topic, timeout_s=args.timeout), where, limit)


def _limit(args: argparse.Namespace) -> int | None:
    limit: int | None = args.limit
    if limit is not None and limit < 1:
        raise InvalidValue("--limit", f"must be at least 1, got {limit}")
    return limit


def run_list(args: argparse.Namespace) -> int:
    from billing.clock import SystemClock

    where = letter_filter(args, SystemClock().now())
    topic, selection = _read(args, where, _limit(args))
    if args.json:
        for letter in selection.letters:
            print(json.dumps(letter_json(letter), ensure_ascii=False))
    else:
        print_table(topic, selection)
    print(_summary(topic, selection), file=sys.stderr)
    return 0


def replayable(letter: StoredLetter) -> bool:
    """A letter carries its whole original: not an unreadable letter, not a cut one."""
    return bool(letter.original) and not letter.truncated


def _unreplayable(letter: StoredLetter) -> str:
    if not letter.original:
        return "it carries no original (" + (letter.detail or letter.reason) + ")"
    return (
        f"it carries only the first {len(letter.original):,} of the {letter.original_size:,} bytes rejected; "
        f"the whole message is {letter.source_topic}[{letter.source_partition}]@{letter.source_offset}, "
        "if that topic still holds it"
    )


def replays_of(letters: Sequence[StoredLetter], target: str) -> list[tuple[Any, list[StoredLetter]]]:
    """One replay per distinct rejected message (a batch rejected for several events has a letter
    each, with the same original), in the order they failed, with the letters it answers."""
    from streams.kafka.dlq import Replay, replay_key

    grouped: dict[tuple[str, int, int, bytes], tuple[Any, list[StoredLetter]]] = {}
    for letter in letters:
        if not replayable(letter):
            continue
        replay = grouped.get(letter.source)
        if replay is None:
            grouped[letter.source] = (Replay(target, replay_key(letter), letter.original), [letter])
        else:
            replay[1].append(letter)
    return list(grouped.values())


def run_replay(args: argparse.Namespace) -> int:
    from billing.clock import SystemClock
    from billing.streaming import bootstrap_servers
    from streams.kafka.dlq import produce_replays

    where = letter_filter(args, SystemClock().now())
    if where.selects_all and not args.all:
        raise InvalidValue(
            "", "choose the letters to replay: --reason, --subscription, --since, --until, --offset, or --all"
        )
    topic, selection = _read(args, where, _limit(args))
    _, target = _names(args)
    missing = sorted(where.offsets - {(x.partition, x.offset) for x in selection.letters})
    if missing:
        print(f"warning: no letter at {', '.join(f'{p}:{o}' for p, o in missing)} in {topic}", file=sys.stderr)
    replays = replays_of(selection.letters, target)
    for letter in selection.letters:
        if not replayable(letter):
            print(
                f"warning: letter {letter.partition}:{letter.offset} is not replayed: {_unreplayable(letter)}",
                file=sys.stderr,
            )
    verb = "would replay" if args.dry_run else "replayed"
    if replays and not args.dry_run:
        produce_replays(bootstrap_servers(args.bootstrap), [replay for replay, _ in replays], timeout_s=args.timeout)
    for replay, letters in replays:
        first = letters[0]
        row = {
            "letters": [f"{x.partition}:{x.offset}" for x in letters],
            "reason": first.reason,
            "subscription_id": first.subscription_id,
            "topic": replay.topic,
            "key": _key_text(replay.key),
            "bytes": len(replay.value),
            "dry_run": args.dry_run,
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(
                f"{verb} {','.join(row['letters'])} ({first.reason}, {first.subscription_id or 'no subscription'}) "
                f"-> {replay.topic} key={row['key']!r}"
            )
    print(
        f"{verb} {len(replays):,} messages ({len(selection.letters):,} of {selection.read:,} letters in {topic}) "
        f"to {target}" + ("" if args.dry_run or not replays else "; dedup drops what was already counted"),
        file=sys.stderr,
    )
    return 0


def run_retention(args: argparse.Namespace) -> int:
    from billing.streaming import bootstrap_servers
    from streams.kafka.dlq import admin_client
    from streams.kafka.topics import retention_ms, set_retention

    wanted = None if args.days is None else dlq_retention_ms(args.days)
    admin, existing = admin_client(bootstrap_servers(args.bootstrap), args.timeout)
    names = [args.topic_prefix + dlq for dlq, _ in TOPICS.values()]
    present = [name for name in names if name in existing]
    if wanted is not None:
        set_retention(admin, dict.fromkeys(present, wanted), timeout=args.timeout)
    current = retention_ms(admin, present, timeout=args.timeout) if present else {}
    for name in names:
        if name in current:
            print(f"{name}: {_days(current[name])}")
        else:
            print(f"{name}: absent (a worker or invoicer creates it keeping letters {_days(dlq_retention_ms())})")
    return 0


def _guarded(run: Any) -> Any:
    """Kafka's failures as a message and an exit status, never a traceback."""

    def guarded(args: argparse.Namespace) -> int:
        from confluent_kafka import KafkaException

        from streams.ingest.producer import DeliveryError, UnknownTopicError
        from streams.kafka.topics import BrokerUnavailable

        try:
            return int(run(args))
        except BrokerUnavailable as error:
            unset = not (args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
            print(
                f"error: {error}"
                + ("; KAFKA_BOOTSTRAP_SERVERS is not set, so the default was tried" if unset else "")
                + "; start a broker (python ops/kafka.py start) or point --bootstrap / KAFKA_BOOTSTRAP_SERVERS at one",
                file=sys.stderr,
            )
            return EXIT_KAFKA
        except UnknownTopicError as error:
            print(f"error: {error}; is --topic-prefix right?", file=sys.stderr)
            return EXIT_INPUT
        except (DeliveryError, TimeoutError, KafkaException) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_KAFKA

    return guarded


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--topic-prefix", default="", help="the pipeline's --topic-prefix")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the broker before giving up (default 5)"
    )


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topic",
        choices=tuple(TOPICS),
        default="usage",
        help="usage: usage.dlq (rejected usage events, default); rating: rating.dlq (rating results not invoiced)",
    )
    parser.add_argument("--reason", action="append", help="only this reason (repeatable, or comma-separated)")
    parser.add_argument(
        "--subscription", action="append", help="only this subscription (repeatable, or comma-separated)"
    )
    parser.add_argument(
        "--since", default=None, help="rejected at or after: RFC 3339 (2026-03-01T00:00:00Z) or an age (7d)"
    )
    parser.add_argument("--until", default=None, help="rejected before: RFC 3339 or an age (36h)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the newest N letters that match")
    _common(parser)


def add_dlq_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``billing dlq`` on the CLI's subcommands."""
    dlq = commands.add_parser(
        "dlq",
        help="dead letters: list them, replay them after a fix, set how long they are kept",
        description="Dead letters: usage the worker rejected (usage.dlq) and rating results the invoicer could "
        "not invoice (rating.dlq). List them, replay them after a fix, set how long they are kept.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="{list,replay,retention}")

    listing = actions.add_parser("list", help="print the dead letters that match, as a table or JSON lines")
    _selection(listing)
    listing.add_argument("--offset", action="append", help="only PARTITION:OFFSET of the DLQ topic (repeatable)")
    listing.add_argument("--json", action="store_true", help="one JSON object per letter")
    listing.set_defaults(run=_guarded(run_list))

    replay = actions.add_parser(
        "replay",
        help="re-produce the selected letters' original messages to the topic they were rejected from",
        description="Re-produce each selected letter's original message, byte for byte and under its key, to "
        "usage.events (for usage.dlq) or rating.results (for rating.dlq). The pipeline validates and "
        "deduplicates it again: replaying twice changes nothing; a letter whose cause is not fixed is "
        "dead-lettered again.",
    )
    _selection(replay)
    replay.add_argument("--offset", action="append", help="PARTITION:OFFSET of a letter in the DLQ topic (repeatable)")
    replay.add_argument("--all", action="store_true", help="every letter (without any other selection)")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed, produce nothing")
    replay.add_argument("--json", action="store_true", help="one JSON object per replayed message")
    replay.set_defaults(run=_guarded(run_replay))

    retention = actions.add_parser(
        "retention",
        help="print, or set with --days, how long usage.dlq and rating.dlq keep a letter",
        description=f"Without --days: print each dead-letter topic's retention. The topics are created with "
        f"${RETENTION_ENV} days (default 365), and a worker or invoicer raises a shorter retention to it at start.",
    )
    retention.add_argument("--days", type=int, default=None, help="set this retention (-1: forever), also shorter")
    _common(retention)
    retention.set_defaults(run=_guarded(run_retention))
