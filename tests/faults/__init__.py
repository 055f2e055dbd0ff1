"""Crashes, restarts and bad input. ``SIGKILL_DRILLS`` marks the modules that kill processes
at random moments and wait on timing: under pytest-xdist one worker runs them one after another
(``--dist loadgroup``), so that no two drills compete for the CPU (docs/decisions/0017)."""

import pytest

SIGKILL_DRILLS = pytest.mark.xdist_group("sigkill_drills")
