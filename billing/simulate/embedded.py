"""``billing simulate --stores embedded``: the scenario through chDB and PostgreSQL for real."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from billing.simulate.runner import Simulation, SimulationResult
from billing.simulate.scenario import Scenario
from billing.stores import Stores, open_stores
from invoicing.ledger.embedded import stop_embedded_database


def simulate_embedded(
    scenario: Scenario, data_dir: str | None = None, *, kafka: str | None = None, scenario_file: Path | None = None
) -> SimulationResult:
    """Fresh stores in a temporary directory unless ``data_dir`` is given. With ``kafka`` (bootstrap
    servers) usage and invoices travel the streaming loop (``scenario_file`` is the worker's catalog)."""

    def run(stores: Stores, where: Path) -> SimulationResult:
        if kafka is None:
            return Simulation(scenario, stores.usage, stores.ledger, dead_letters=stores.dead_letters).run()
        from billing.simulate.kafka import simulate_over_kafka

        assert scenario_file is not None, "the Kafka worker reads the scenario file as its catalog"
        return simulate_over_kafka(scenario, scenario_file, kafka, stores.usage, stores.ledger, where / "kafka")

    if data_dir is not None:
        stores = open_stores(Path(data_dir))
        try:
            return run(stores, Path(data_dir))
        finally:
            stores.close()
    with tempfile.TemporaryDirectory(prefix="billing-simulate-") as tmp:
        stores = open_stores(Path(tmp))
        try:
            return run(stores, Path(tmp))
        finally:
            stores.close()
            if not os.environ.get("DATABASE_URL"):
                stop_embedded_database(Path(tmp) / "postgres")  # its directory is about to go
