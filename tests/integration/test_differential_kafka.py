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
from billing.simulate.runner import SimulationResult, terms_of
from billing.simulate.scenario import Scenario
from billing.usage_reader import StoreUsageReader
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.memory import MemoryLedger
from invoicing.ledger.postgres import PostgresLedger
from invoicing.service import InvoiceService
from streams.clickhouse.store import ClickHouseUsageStore
from streams.memory import MemoryUsageStore
from streams.operators.records import UsageRecord

pytestmark = pytest.mark.integration

CASES = sorted((Path(__file__).parents[1] / "scenarios" / "cases").glob("*.yaml"))


class ArrivalsSimulation(Simulation):
    """The in-process simulation, noting when each accepted event arrived (in process an event
    is accepted as it arrives)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.accepted_at: list[tuple[str, datetime]] = []
        super().__init__(*args, **kwargs)

    def accepted(self, record: UsageRecord) -> None:
        super().accepted(record)
        self.accepted_at.append((record.subscription_id, self.clock.now()))


def _running(simulation: ArrivalsSimulation, result: SimulationResult) -> set[str]:
    """Subscriptions that accepted usage while in their last, still open period: each must have
    a running result (others may have one too: a period that opened before their last flush)."""
    return {s for s, at in simulation.accepted_at if (p := result.cycles[s].period) is not None and at >= p.start}


def _running_results_checked(simulation: Simulation, store: MemoryUsageStore, over_kafka: SimulationResult) -> set[str]:
    """The rating agent's running result of each period still open equals the in-process usage,
    priced; returns the subscriptions compared."""
    pricing = InvoiceService(MemoryLedger(), StoreUsageReader(store), simulation.terms)
    for subscription_id, current in over_kafka.current_usage.items():
        cycle = over_kafka.cycles[subscription_id]
        assert cycle.period is not None and current.period == cycle.period
        expected = pricing.rate(cycle.subscription, cycle.plan, cycle.period, current.proration, current.rated_at)
        assert current == expected
    return set(over_kafka.current_usage)


def _over_kafka(
    scenario: Scenario, case: Path, bootstrap: str, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> SimulationResult:
    engine = create_engine(pg_url)
    try:
        usage = ClickHouseUsageStore(chdb_client, clickhouse_db)
        return simulate_over_kafka(scenario, case, bootstrap, usage, PostgresLedger(engine), tmp_path)
    finally:
        engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_kafka_loop_gives_the_invoices_of_simulate(
    case: Path, kafka_broker: Any, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> None:
    scenario = load_scenario(case)
    in_process_store = MemoryUsageStore()
    simulation = ArrivalsSimulation(scenario, in_process_store, MemoryLedger())
    in_process = simulation.run()
    over_kafka = _over_kafka(scenario, case, kafka_broker.bootstrap, chdb_client, clickhouse_db, pg_url, tmp_path)

    assert [invoice_to_dict(i) for i in over_kafka.invoices] == [invoice_to_dict(i) for i in in_process.invoices]
    reasons = Counter(str(letter.rejection.reason) for letter in over_kafka.dead_letters)
    assert reasons == Counter(str(letter.rejection.reason) for letter in in_process.dead_letters)
    assert over_kafka.stats.accepted == in_process.stats.accepted
    # every golden scenario runs until its late usage is invoiced (unbilled late usage on both
    # paths: test_late_usage_not_invoiced_yet_is_the_same_on_both_paths)
    assert over_kafka.unbilled_late_periods == in_process.unbilled_late_periods == {}

    assert _running(simulation, in_process) <= _running_results_checked(simulation, in_process_store, over_kafka)


def test_running_rating_of_an_open_period_is_its_usage_so_far_priced(
    kafka_broker: Any, chdb_client: Any, clickhouse_db: str, pg_url: str, tmp_path: Path
) -> None:
    """Stop mid-period: the rating agent's running RatingResult of each open period equals the
    usage that arrived so far, priced (read from the in-process run's store)."""
    case = next(c for c in CASES if c.stem.startswith("05_"))
    scenario = replace(load_scenario(case), run_until=datetime(2026, 1, 20, tzinfo=UTC))
    in_process_store = MemoryUsageStore()
    Simulation(scenario, in_process_store, MemoryLedger()).run()
    result = _over_kafka(scenario, case, kafka_broker.bootstrap, chdb_client, clickhouse_db, pg_url, tmp_path)

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


@pytest.mark.parametrize(
    ("name", "run_until", "unbilled", "running"),
    [
        # January's late usage arrived Feb 3; the February invoice that bills it is due Mar 1;
        # February's usage (Feb 10) is the running result of the open period
        (
            "22_late_usage_adjustment",
            datetime(2026, 2, 10, tzinfo=UTC),
            {"s": {datetime(2026, 1, 1, tzinfo=UTC)}},
            {"s"},
        ),
        # the expired trial's late usage arrived Jan 20; its adjustment invoice is due Feb 15
        (
            "28_late_usage_after_trial_expired",
            datetime(2026, 2, 1, tzinfo=UTC),
            {"tri": {datetime(2026, 1, 1, tzinfo=UTC)}},
            set(),
        ),
    ],
)
def test_late_usage_not_invoiced_yet_is_the_same_on_both_paths(
    name: str,
    run_until: datetime,
    unbilled: dict[str, set[datetime]],
    running: set[str],
    kafka_broker: Any,
    chdb_client: Any,
    clickhouse_db: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    """Stopped before late usage reaches its invoice: both paths report it as unbilled, by the
    period it belongs to (over Kafka from the records the sink wrote), and the running results
    of the periods still open are the same."""
    case = next(c for c in CASES if c.stem == name)
    scenario = replace(load_scenario(case), run_until=run_until)
    store = MemoryUsageStore()
    simulation = ArrivalsSimulation(scenario, store, MemoryLedger())
    in_process = simulation.run()
    over_kafka = _over_kafka(scenario, case, kafka_broker.bootstrap, chdb_client, clickhouse_db, pg_url, tmp_path)
    assert in_process.unbilled_late_periods == unbilled
    assert over_kafka.unbilled_late_periods == unbilled
    assert [invoice_to_dict(i) for i in over_kafka.invoices] == [invoice_to_dict(i) for i in in_process.invoices]
    assert _running_results_checked(simulation, store, over_kafka) == _running(simulation, in_process) == running
