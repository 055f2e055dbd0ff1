"""``billing serve`` and ``billing apikey`` as a new user meets them, as processes: a key printed
alone on the last line and never listed; a server that answers with it, over plaintext or TLS, and
stops cleanly on SIGTERM; one-line errors (exit 1 or 2, no traceback) for a taken port and bad TLS
files. DATABASE_URL points the commands at the test's database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2 as P
from schemas.generated.smallbiznis.pricing.v1 import pricing_pb2_grpc

pytestmark = pytest.mark.integration


def billing(pg_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": pg_url}
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def one_error(done: subprocess.CompletedProcess[str], status: int) -> str:
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture
def serve(pg_url: str, tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], int]:
        env = {**os.environ, "DATABASE_URL": pg_url}
        process = subprocess.Popen(
            [sys.executable, "-m", "billing.cli", "serve", "--usage-dir", str(tmp_path), *args],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        return process, int(line.split("127.0.0.1:")[1].split()[0])

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_apikey_create_prints_the_key_alone_on_its_last_line_and_list_never_shows_it(pg_url: str) -> None:
    done = billing(pg_url, "apikey", "create", "--tenant", "t1", "--name", "ci")
    assert done.returncode == 0, done.stderr
    key = done.stdout.splitlines()[-1]
    assert key.startswith("sbk_") and " " not in key
    key_id = key.split("_")[1]
    listed = billing(pg_url, "apikey", "list", "--tenant", "t1")
    assert key_id in listed.stdout and key.split("_")[2] not in listed.stdout and "ci" in listed.stdout
    assert billing(pg_url, "apikey", "list", "--tenant", "t2").stdout.count("\n") == 1  # the header only
    revoked = billing(pg_url, "apikey", "revoke", key_id)
    assert revoked.returncode == 0 and f"revoked {key_id}" in revoked.stdout
    assert one_error(billing(pg_url, "apikey", "revoke", "nope"), 2) == "error: key_id: no key 'nope'"


def test_serve_answers_with_a_created_key_and_stops_on_sigterm(pg_url: str, serve: object) -> None:
    key = billing(pg_url, "apikey", "create", "--tenant", "t1").stdout.splitlines()[-1]
    process, port = serve("--port", "0")  # type: ignore[operator]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        plan = P.Plan(code="basic", currency_code="USD", base_price="9.99")
        created = stub.CreatePlan(P.CreatePlanRequest(plan=plan), metadata=[("authorization", f"Bearer {key}")])
        assert (created.plan.id, created.plan.tenant_id) == ("basic@1", "t1")
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListPlans(P.ListPlansRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "stopped" in out


def test_serve_over_tls(pg_url: str, serve: object, tmp_path: Path) -> None:
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key_file), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    key = billing(pg_url, "apikey", "create", "--tenant", "t1").stdout.splitlines()[-1]
    process, port = serve("--port", "0", "--tls-cert", str(cert), "--tls-key", str(key_file))  # type: ignore[operator]
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        plans = pricing_pb2_grpc.PricingServiceStub(channel).ListPlans(
            P.ListPlansRequest(), metadata=[("authorization", f"Bearer {key}")], timeout=10
        )
        assert list(plans.plans) == []
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def test_a_taken_port_and_bad_tls_files_are_one_line(pg_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        error = one_error(billing(pg_url, "serve", "--port", port, "--usage-dir", str(tmp_path)), 1)
        assert error.startswith(f"error: --port: cannot listen on 127.0.0.1:{port}")
    assert one_error(billing(pg_url, "serve", "--port", "0", "--tls-cert", "x.pem"), 2).startswith("error: --tls-key:")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    error = one_error(billing(pg_url, "serve", "--port", "0", "--tls-cert", str(junk), "--tls-key", str(junk)), 2)
    assert error.startswith("error: --tls-cert/--tls-key: cannot load")
    assert one_error(billing(pg_url, "serve", "--port", "70000"), 2).startswith("error: --port:")


def test_help_is_fast_and_names_the_options() -> None:
    done = subprocess.run([sys.executable, "-m", "billing.cli", "serve", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--tls-cert" in done.stdout and "--data-dir" in done.stdout
    wrong = subprocess.run([sys.executable, "-m", "billing.cli", "serve"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "--port" in wrong.stderr and "Traceback" not in wrong.stderr


def test_an_unreachable_ledger_is_one_line() -> None:
    for command in (("serve", "--port", "0"), ("apikey", "list")):
        error = one_error(billing("postgresql+psycopg://billing@127.0.0.1:1/ledger", *command), 1)
        assert error.startswith("error: the ledger's PostgreSQL does not answer:"), error
