"""stripe-mock (ops/stripe_mock.py, built from the Go module proxy on first use) started once per test
session on free loopback ports, and stopped after it."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ops_stripe_mock", ROOT / "ops" / "stripe_mock.py")
assert _spec is not None and _spec.loader is not None
ops_stripe_mock = sys.modules.setdefault("ops_stripe_mock", importlib.util.module_from_spec(_spec))
if not hasattr(ops_stripe_mock, "stripe_mock"):
    _spec.loader.exec_module(ops_stripe_mock)  # standard library only, not a package


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def stripe_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running stripe-mock (plain HTTP on loopback)."""
    try:
        binary = ops_stripe_mock.stripe_mock()
    except ops_stripe_mock.GoMissing as error:
        pytest.fail(str(error))
    port, tls_port = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("stripe-mock") / "stripe-mock.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(binary), "-http-addr", f"127.0.0.1:{port}", "-https-addr", f"127.0.0.1:{tls_port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def alive() -> None:
            assert process.poll() is None, f"stripe-mock exited: {log.read_text()[-2000:]}"

        wait_until(lambda: _answers(port), 30, "stripe-mock listening", step=alive)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
