"""The in-process driver: the shared operators with state in dictionaries, for ``simulate`` and
``demo``. Accepted events and changed windows are written to the store in batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from streams.operators.dedup import DedupEntry, Verdict
from streams.operators.process import Catalog, Outcome, process_event
from streams.operators.records import UsageEvent, UsageRecord
from streams.operators.windows import WindowAccumulator, WindowKey, WindowSpan
from streams.ports import DeadLetter, DeadLetterSink, UsageStore, WindowRow


@dataclass
class PipelineStats:
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    invalid: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return self.conflicts + sum(self.invalid.values())


def changed_rows(
    dirty: Mapping[WindowKey, tuple[WindowSpan, ...]],
    windows: Mapping[WindowKey, WindowAccumulator],
    tenant_of: Callable[[str], str],
) -> list[WindowRow]:
    """The rows to store for the buckets ``dirty`` names: their current absolute totals."""
    return [
        WindowRow(key, tenant_of(key.subscription_id), spans[0][2], acc.version, acc.totals(), spans[1:])
        for key, spans in dirty.items()
        for acc in (windows[key],)
    ]


class InProcessPipeline:
    def __init__(
        self,
        catalog: Catalog,
        store: UsageStore,
        dead_letters: DeadLetterSink,
        now_ms: Callable[[], int],
        *,
        tenant_of: Callable[[str], str],
        on_accepted: Callable[[UsageRecord], None] | None = None,
        batch_size: int = 100_000,
        original_of: Callable[[UsageEvent], bytes] | None = None,
    ) -> None:
        self.catalog = catalog
        self.original_of = original_of
        """Encodes a rejected event that came without its original bytes, for a dead-letter store
        that tells letters apart by them (ClickHouse's ``dead_letters``); called on rejections only."""
        self.store = store
        self.dead_letters = dead_letters
        self.now_ms = now_ms
        self.tenant_of = tenant_of
        self.on_accepted = on_accepted
        self.batch_size = batch_size
        self.stats = PipelineStats()
        self._dedup: dict[str, DedupEntry] = {}
        self._windows: dict[WindowKey, WindowAccumulator] = {}
        self._pending: list[UsageRecord] = []
        self._dirty: dict[WindowKey, tuple[WindowSpan, ...]] = {}
        self._letters: list[DeadLetter] = []

    def process(self, event: UsageEvent, original: bytes = b"") -> Outcome:
        outcome = process_event(event, self.catalog, self._dedup, self._windows, self.now_ms())
        if outcome.rejection is not None:
            if not original and self.original_of is not None:
                original = self.original_of(event)
            self._letters.append(DeadLetter(outcome.rejection, original))
            if outcome.verdict is Verdict.CONFLICT:
                self.stats.conflicts += 1
            else:
                self.stats.invalid[outcome.rejection.reason] += 1
        elif outcome.verdict is Verdict.ACCEPTED:
            assert outcome.record is not None
            self.stats.accepted += 1
            self._pending.append(outcome.record)
            assert outcome.changed is not None
            key, spans = outcome.changed
            self._dirty[key] = spans
            if self.on_accepted is not None:
                self.on_accepted(outcome.record)
        else:
            self.stats.duplicates += 1
        if len(self._pending) >= self.batch_size:
            self.flush()
        return outcome

    def run(self, events: Iterable[UsageEvent]) -> PipelineStats:
        for event in events:
            self.process(event)
        self.flush()
        return self.stats

    def flush(self) -> None:
        """Write accepted events and the current absolute totals of every changed window."""
        rows = changed_rows(self._dirty, self._windows, self.tenant_of)
        if self._pending or rows:
            self.store.write(self._pending, rows)
        if self._letters:
            self.dead_letters.publish(self._letters)
        self._pending, self._dirty, self._letters = [], {}, []
