"""Same answers on both paths: every golden scenario through ``billing simulate`` in process and
through the streaming loop on the real broker (Faust worker, sink into chDB, rating agent on
``rating.results``, invoice worker into PostgreSQL), on the scenario's test clock. The invoices
must be identical in every field, and the dead letters must have the same reasons."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from billing.simulate import Simulation, load_scenario
from billing.simulate.kafka import simulate_over_kafka
from billing.simulate.runner import terms_of
from billing.usage_reader import StoreUsageReader
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.service import InvoiceService
from streams.clickhouse.store import ClickHouseUsageStore
from streams.memory import MemoryUsageStore

pytestmark = pytest.mark.integration

CASES = sorted((Path(__file__).parents[1] / "scenarios" / "cases").glob("*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_kafka_loop_gives_the_invoices_of_simulate(
    case: Path, kafka_broker: Any, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> None:
    scenario = load_scenario(case)
    in_process_store = MemoryUsageStore()
    in_process = Simulation(scenario, in_process_store, MemoryLedger()).run()

    engine = create_engine(pg_url)
    try:
        over_kafka = simulate_over_kafka(
            scenario,
            case,
            kafka_broker.bootstrap,
            ClickHouseUsageStore(chdb_client, clickhouse_db),
            PostgresLedger(engine),
            tmp_path,
        )
    finally:
        engine.dispose()

    assert [invoice_to_dict(i) for i in over_kafka.invoices] == [invoice_to_dict(i) for i in in_process.invoices]
    reasons = Counter(str(letter.rejection.reason) for letter in over_kafka.dead_letters)
    assert reasons == Counter(str(letter.rejection.reason) for letter in in_process.dead_letters)
    assert over_kafka.stats.accepted == in_process.stats.accepted
    assert over_kafka.unbilled_late_periods == in_process.unbilled_late_periods

    # The rating agent's running result of each period still open: the in-process usage, priced.
    pricing = InvoiceService(MemoryLedger(), StoreUsageReader(in_process_store), terms_of(scenario))
    for subscription_id, current in over_kafka.current_usage.items():
        cycle = over_kafka.cycles[subscription_id]
        if cycle.period != current.period:
            continue  # closed after the last usage arrived: nothing to compare
        share = current.proration
        expected = pricing.rate(cycle.subscription, cycle.plan, cycle.period, share, current.rated_at)
        assert current == expected


def test_running_rating_of_an_open_period_is_its_usage_so_far_priced(
    kafka_broker: Any, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> None:
    """Stop mid-period: the rating agent's running RatingResult of each open period equals the
    usage that arrived so far, priced (read from the in-process run's store)."""
    case = next(c for c in CASES if c.stem.startswith("05_"))
    scenario = replace(load_scenario(case), run_until=datetime(2026, 1, 20, tzinfo=UTC))
    in_process_store = MemoryUsageStore()
    Simulation(scenario, in_process_store, MemoryLedger()).run()
    engine = create_engine(pg_url)
    try:
        usage = ClickHouseUsageStore(chdb_client, clickhouse_db)
        result = simulate_over_kafka(scenario, case, kafka_broker.bootstrap, usage, PostgresLedger(engine), tmp_path)
    finally:
        engine.dispose()

    assert result.invoices == []
    assert sorted(result.current_usage) == ["sub_a", "sub_b", "sub_c", "sub_d"]
    pricing = InvoiceService(MemoryLedger(), StoreUsageReader(in_process_store), terms_of(scenario))
    for subscription_id, current in result.current_usage.items():
        cycle = result.cycles[subscription_id]
        expected = pricing.rate(cycle.subscription, cycle.plan, current.period, Fraction(1), current.rated_at)
        assert current == expected
    quantities = {s: [i.quantity for i in r.items] for s, r in result.current_usage.items()}
    assert quantities == {"sub_a": [1500], "sub_b": [1500], "sub_c": [1500], "sub_d": [999]}
    assert result.current_usage["sub_a"].items[0].amount.amount == 1000  # 500 over included at 0.02
