"""Dead letters on ClickHouse keep the reason, the field, the original bytes and the source
position; a redelivered rejection is stored once."""

from __future__ import annotations

from typing import Any

import pytest

from streams.clickhouse.store import ClickHouseDeadLetters
from streams.operators.records import Reason, Rejection
from streams.ports import DeadLetter

pytestmark = pytest.mark.integration

LETTERS = [
    DeadLetter(Rejection(Reason.UNDECODABLE, "not Avro"), b"\xff\x00\x80 not utf-8 \x00", "usage.events", 3, 17),
    DeadLetter(
        Rejection(Reason.INVALID_VALUE, "value is NaN", "value", "sub-1", "k1"),
        b'{"value": NaN}',
        "usage.events",
        0,
        5,
    ),
    DeadLetter(Rejection(Reason.UNKNOWN_METRIC, "no metric 'x'", "metric_code", "sub-2", "k2"), b"", "", -1, -1),
]


def test_letters_round_trip_with_their_original_bytes(chdb_client: Any, clickhouse_db: str) -> None:
    sink = ClickHouseDeadLetters(chdb_client, clickhouse_db)
    sink.publish(LETTERS)
    assert sorted(sink.letters(), key=repr) == sorted(LETTERS, key=repr)
    assert sink.letters(Reason.INVALID_VALUE) == [LETTERS[1]]
    assert sink.counts() == {"undecodable": 1, "invalid_value": 1, "unknown_metric": 1}


def test_a_redelivered_letter_is_stored_once(chdb_client: Any, clickhouse_db: str) -> None:
    sink = ClickHouseDeadLetters(chdb_client, clickhouse_db)
    sink.publish(LETTERS)
    sink.publish(LETTERS)  # the same batch again: block dedup
    sink.publish(LETTERS[1:2])  # the same letter in another batch: collapsed by FINAL
    assert len(sink.letters()) == len(LETTERS)
    assert sum(sink.counts().values()) == len(LETTERS)


def test_a_run_on_embedded_stores_keeps_its_dead_letters_in_clickhouse(chdb_client: Any, clickhouse_db: str) -> None:
    """``simulate --stores embedded`` and ``billing demo`` hand every rejected event to the usage
    store's ``dead_letters`` table as well as to the run's result: the same letters, once each."""
    from pathlib import Path

    from billing.simulate import load_scenario
    from billing.simulate.runner import Simulation
    from invoicing.ledger.memory import MemoryLedger
    from streams.clickhouse.store import ClickHouseUsageStore

    case = Path(__file__).parents[1] / "scenarios" / "cases" / "21_duplicates_conflicts_invalid.yaml"
    sink = ClickHouseDeadLetters(chdb_client, clickhouse_db)
    store = ClickHouseUsageStore(chdb_client, clickhouse_db)
    result = Simulation(load_scenario(case), store, MemoryLedger(), dead_letters=sink).run()
    assert result.dead_letters
    assert sorted(sink.letters(), key=repr) == sorted(result.dead_letters, key=repr)
