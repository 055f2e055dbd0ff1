"""The one wait of the tests that poll: a condition, a deadline, and a failure naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    step: Callable[[], object] | None = None,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """The first truthy value of ``condition()``, asked every ``interval`` seconds; an AssertionError
    naming ``what`` (and saying ``diagnose()``) if none came within ``timeout`` seconds.

    ``step`` runs each turn the condition is still false, before the deadline is looked at: it
    asserts that what is awaited can still come (a process is alive) or drives it (a worker's batch).
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if step is not None:
            step()
        if time.monotonic() >= deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"timed out after {round(timeout, 1):g}s waiting for {what}{detail}")
        time.sleep(interval)
    return value
