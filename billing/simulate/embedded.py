"""``billing simulate --stores embedded``: the scenario through chDB and PostgreSQL for real."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from billing.simulate.runner import Simulation, SimulationResult
from billing.simulate.scenario import Scenario
from billing.stores import open_stores
from invoicing.ledger.embedded import stop_embedded_database


def simulate_embedded(scenario: Scenario, data_dir: str | None = None) -> SimulationResult:
    """Fresh stores in a temporary directory unless ``data_dir`` is given."""
    if data_dir is not None:
        stores = open_stores(Path(data_dir))
        return Simulation(scenario, stores.usage, stores.ledger).run()
    with tempfile.TemporaryDirectory(prefix="billing-simulate-") as tmp:
        stores = open_stores(Path(tmp))
        try:
            return Simulation(scenario, stores.usage, stores.ledger).run()
        finally:
            stores.close()
            if not os.environ.get("DATABASE_URL"):
                stop_embedded_database(Path(tmp) / "postgres")  # its directory is about to go
