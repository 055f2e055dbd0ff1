"""Which tests pytest-xdist keeps together on one worker (``make test`` runs ``-n 3``; decision 0017).

Every other test is scheduled on its own, like xdist's ``--dist load``. A group is sent to one
worker as a whole and runs there in file order:

- ``sigkill_drills``: the fault drills that kill processes at random moments and wait on timing.
  Run at the same time on two cores, a drill's worker got so little done before its planned kill
  that the next kill point never came (test_worker_recovery waited 300 s for it).
- ``secure_kafka``: test_kafka_security.py starts a locked-down broker per module (about 15 s):
  once, not once per worker.

Grouping is by module path, on the controller, because ``xdist_group`` marks do nothing with
pytest 9.2 (pytest-xdist#1386: the ``@group`` suffix written into the node id is lost).
"""

from __future__ import annotations

from typing import Any

GROUPS = {
    "tests/faults/test_invoice_worker_crash.py": "sigkill_drills",
    "tests/faults/test_kafka_exactness.py": "sigkill_drills",
    "tests/faults/test_outbox_relay_crash.py": "sigkill_drills",
    "tests/faults/test_rater_crash.py": "sigkill_drills",
    "tests/faults/test_worker_hostile_input.py": "sigkill_drills",
    "tests/faults/test_worker_recovery.py": "sigkill_drills",
    "tests/integration/test_kafka_security.py": "secure_kafka",
}


def group_of(nodeid: str) -> str:
    """The scheduling unit of a test: its group's name, else the test itself."""
    return GROUPS.get(nodeid.split("::", 1)[0], nodeid)


def scheduler(config: Any, log: Any) -> Any:
    """xdist's scope scheduler with :func:`group_of` as the scope. Scopes go out largest first
    (xdist's default reordering), so the drills start at once rather than last."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)
