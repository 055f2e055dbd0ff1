"""``billing simulate``: run a scenario file on a test clock and print the invoices it produces."""

from __future__ import annotations

from typing import Any

from billing.simulate.runner import Simulation, SimulationResult
from billing.simulate.scenario import Scenario
from billing.simulate.scenario_file import load_scenario, parse_scenario
from invoicing.engine.render import invoice_to_dict
from invoicing.ledger.memory import MemoryLedger
from streams.memory import MemoryUsageStore


def simulate_in_memory(scenario: Scenario) -> SimulationResult:
    """The scenario on in-memory stores: fast, isolated, the same operators and engine."""
    return Simulation(scenario, MemoryUsageStore(), MemoryLedger()).run()


def result_to_dict(result: SimulationResult) -> dict[str, Any]:
    payments: dict[str, Any] = {}
    if result.payment_attempts is not None:  # only scenarios that attach payment methods
        payments = {"payment_attempts": result.payment_attempts, "subscription_statuses": result.subscription_statuses}
    return {
        **payments,
        "invoices": [invoice_to_dict(invoice) for invoice in result.invoices],
        "dead_letters": [
            {
                "subscription_id": letter.rejection.subscription_id,
                "idempotency_key": letter.rejection.idempotency_key,
                "reason": str(letter.rejection.reason),
                "field": letter.rejection.field,
                "detail": letter.rejection.detail,
            }
            for letter in result.dead_letters
        ],
    }


__all__ = ["Simulation", "SimulationResult", "load_scenario", "parse_scenario", "result_to_dict", "simulate_in_memory"]
