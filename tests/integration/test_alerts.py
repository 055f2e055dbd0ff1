"""The alert rules are valid and do what docs/operations.md says (issue #15.2): ``promtool check
rules`` and ``promtool test rules`` run here with the promtool of ops/promtool.py, which a fresh
machine builds from the Go module proxy the first time (Go required: without it this fails, saying so)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus"
_spec = importlib.util.spec_from_file_location("ops_promtool", ROOT / "ops" / "promtool.py")
assert _spec is not None and _spec.loader is not None
ops_promtool = sys.modules.setdefault("ops_promtool", importlib.util.module_from_spec(_spec))
if not hasattr(ops_promtool, "promtool"):
    _spec.loader.exec_module(ops_promtool)  # ops/promtool.py: standard library only, not a package


@pytest.fixture(scope="session")
def promtool() -> Path:
    try:
        return Path(ops_promtool.promtool())
    except ops_promtool.GoMissing as error:
        pytest.fail(str(error))


def run(promtool: Path, *args: str) -> str:
    result = subprocess.run([str(promtool), *args], cwd=RULES, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_the_alert_rules_are_valid(promtool: Path) -> None:
    output = run(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS: 13 rules found" in output, output


def test_every_alert_fires_when_it_should_and_only_then(promtool: Path) -> None:
    run(promtool, "test", "rules", "alerts_test.yml")
