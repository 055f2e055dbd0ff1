"""``billing serve`` and ``billing apikey``: the served API and the keys that open it. Both use the
ledger's PostgreSQL: ``DATABASE_URL``, else the embedded server under ``--data-dir`` (the default
of ``billing catalog`` and ``billing relay``, so they share one ledger)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rating.errors import InvalidValue

LEDGER_DIR = ".data/ledger"
NO_USAGE_STORE = "off"
"""``--usage-dir off``: no embedded usage store (its owner is another process, e.g. the loop's rater)."""


def add_serve_command(commands: Any) -> None:
    """Register ``billing serve`` on the CLI's subcommands."""
    serve = commands.add_parser("serve", help="serve the gRPC API with API keys (docs/api.md)")
    serve.add_argument("--port", type=int, required=True, help="TCP port (0: any free port, printed)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    serve.add_argument("--data-dir", default=LEDGER_DIR, help="embedded PostgreSQL lives here unless $DATABASE_URL")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain (with --tls-key: serve TLS)")
    serve.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    serve.add_argument("--workers", type=int, default=8, help="threads answering calls")
    serve.add_argument(
        "--usage-dir",
        default=None,
        help="embedded chDB of the usage store lives in USAGE_DIR/chdb unless $CLICKHOUSE_URL (default --data-dir); "
        "serve owns it while it runs; 'off': none (beside a loop whose rater owns it)",
    )
    serve.add_argument(
        "--webhooks-port",
        type=int,
        default=None,
        help="serve POST /webhooks/{stripe,xendit,midtrans} on this port (docs/payments.md)",
    )
    serve.add_argument(
        "--webhooks-host", default="127.0.0.1", help="address the webhooks port binds (default loopback only)"
    )
    serve.add_argument(
        "--pdf-dir",
        default=None,
        help="where GetInvoicePdf writes the PDFs it draws; its answer is their path (default DATA_DIR/invoice-pdfs)",
    )
    serve.add_argument(
        "--topic-prefix",
        default="",
        help="prefix of the topic IngestUsage writes to (<prefix>usage.events): the loop's --topic-prefix",
    )
    from streams.metrics import add_metrics_arguments

    add_metrics_arguments(serve)
    serve.set_defaults(run=run_serve)


def add_apikey_command(commands: Any) -> None:
    """Register ``billing apikey create|list|revoke`` on the CLI's subcommands."""
    apikey = commands.add_parser("apikey", help="API keys of billing serve: create, list, revoke")
    actions = apikey.add_subparsers(dest="apikey_command", required=True)
    create = actions.add_parser("create", help="a new key of a tenant, printed once, alone on the last line")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="what the key is for (shown by list)")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="keys (never their secrets)")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="revoke a key: its calls answer UNAUTHENTICATED from now on")
    revoke.add_argument("key_id", help="the key id (list shows it; it is the key's part after sbk_)")
    revoke.set_defaults(run=run_revoke)
    for action in (create, listing, revoke):
        action.add_argument(
            "--data-dir", default=LEDGER_DIR, help="embedded PostgreSQL lives here unless $DATABASE_URL"
        )


def _engine(data_dir: str, pool_size: int = 5) -> Any:
    """An engine on the migrated ledger; an unreachable server is one line and status 1."""
    from billing.database import ledger_engine

    return ledger_engine(Path(data_dir), pool_size)


def _tls(cert: str | None, key: str | None) -> tuple[bytes, bytes] | None:
    """The (certificate chain, key) PEM pair, checked to load together; None without TLS."""
    import ssl

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidValue("--tls-cert" if cert is None else "--tls-key", "TLS needs both --tls-cert and --tls-key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        return Path(cert).read_bytes(), Path(key).read_bytes()
    except (OSError, ssl.SSLError) as error:
        raise InvalidValue("--tls-cert/--tls-key", f"cannot load {cert} with {key}: {error}") from None


def _usage_store(data_dir: Path) -> tuple[Any, str]:
    """The usage store, or None and why not: serve starts without it (its usage RPCs answer
    UNAVAILABLE), e.g. when another process owns the embedded chDB directory."""
    from billing.stores import clickhouse_where, open_usage_store

    try:
        return open_usage_store(data_dir), ""
    except Exception as error:  # any failure of the store's driver: serve still starts without it
        problem = f"{clickhouse_where(data_dir)}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        print(f"billing serve: the usage store is not open ({problem})", file=sys.stderr, flush=True)
        return None, problem


def _webhook_verifiers(port: int | None) -> dict[str, Any]:
    """The providers' webhook verifiers from the environment; checked before anything starts."""
    from billing.payments.webhooks import verifiers_from_env

    if port is None:
        return {}
    if not 0 <= port <= 65535:
        raise InvalidValue("--webhooks-port", f"must be 0 to 65535, got {port}")
    verifiers = verifiers_from_env()
    if not verifiers:
        raise InvalidValue(
            "--webhooks-port", "no provider's webhook secret is set: XENDIT_CALLBACK_TOKEN or MIDTRANS_SERVER_KEY"
        )
    return verifiers


def _payment_settlement(engine: Any) -> Any:
    """The ledger's PaymentSettlement on ``engine``: verified events applied to the payment
    attempts and invoices, once per (provider, event id)."""
    from billing.clock import SystemClock
    from billing.payments.service import PaymentSettlementService
    from invoicing.ledger.postgres import PostgresLedger
    from invoicing.ledger.postgres_payments import PostgresPayments

    return PaymentSettlementService(PostgresPayments(PostgresLedger(engine)), SystemClock().now)


def run_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from billing.api.server import ApiServer
    from billing.api_kafka import KafkaRecorder, usage_topic
    from billing.stores import event_log
    from billing.usage_reader import StoreUsageReader

    if not 0 <= args.port <= 65535:
        raise InvalidValue("--port", f"must be 0 to 65535, got {args.port}")
    if args.workers < 1:
        raise InvalidValue("--workers", f"must be at least 1, got {args.workers}")
    tls = _tls(args.tls_cert, args.tls_key)
    verifiers = _webhook_verifiers(args.webhooks_port)
    engine = _engine(args.data_dir, pool_size=args.workers)
    if args.usage_dir == NO_USAGE_STORE and not os.environ.get("CLICKHOUSE_URL"):
        usage, problem = None, "this serve runs without the embedded usage store (--usage-dir off); set CLICKHOUSE_URL"
    else:
        usage, problem = _usage_store(Path(args.usage_dir or args.data_dir))
    stop = threading.Event()
    webhooks = None
    try:
        reader = None if usage is None else StoreUsageReader(usage)
        log = None if usage is None else event_log(usage)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        recorder = None if not bootstrap else KafkaRecorder(bootstrap, usage_topic(args.topic_prefix))
        server = ApiServer(
            engine,
            max_workers=args.workers,
            usage=reader,
            events=log,
            usage_problem=problem,
            recorder=recorder,
            pdf_dir=Path(args.pdf_dir or Path(args.data_dir) / "invoice-pdfs"),
        )
        if args.metrics_port:
            from streams.metrics import serve as serve_metrics

            serve_metrics(server.metrics.registry, args.metrics_port, args.metrics_host)
        if verifiers:
            from billing.payments.webhooks import WebhookServer

            webhooks = WebhookServer(verifiers, _payment_settlement(engine))
            try:
                webhooks_port = webhooks.start(args.webhooks_port, args.webhooks_host)
            except OSError as error:
                print(f"error: --webhooks-port: {error} (is another server using it?)", file=sys.stderr)
                return 1
            names = ", ".join(sorted(verifiers))
            print(f"billing serve: webhooks of {names} on http://{args.webhooks_host}:{webhooks_port}", flush=True)
        try:
            port = server.start(args.port, args.host, tls)
        except OSError as error:
            print(f"error: --port: {error} (is another server using it?)", file=sys.stderr)
            return 1
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
        print(f"billing serve: listening on {args.host}:{port} ({'TLS' if tls else 'plaintext'})", flush=True)
        while not stop.wait(0.5):  # a timed wait: the signal handler runs even if a wait is not woken
            pass
        server.stop()
    finally:
        if webhooks is not None:
            webhooks.stop()
        engine.dispose()
        if usage is not None:
            usage.client.close()
    print("billing serve: stopped", flush=True)
    return 0


def run_create(args: argparse.Namespace) -> int:
    from billing.api.keys import create_key
    from invoicing.ledger.api_keys import PostgresApiKeys
    from rating.limits import MAX_TEXT, bounded_text

    bounded_text(args.tenant, "--tenant")
    if args.name:
        bounded_text(args.name, "--name", MAX_TEXT)
    engine = _engine(args.data_dir)
    try:
        stored, key = create_key(PostgresApiKeys(engine), args.tenant, args.name)
    finally:
        engine.dispose()
    print(f"key id {stored.key_id} for tenant {stored.tenant_id}; the key is shown once, keep it now:")
    print(key)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from invoicing.ledger.api_keys import PostgresApiKeys

    engine = _engine(args.data_dir)
    try:
        keys = PostgresApiKeys(engine).list(args.tenant)
    finally:
        engine.dispose()
    print(f"{'key id':<16}  {'tenant':<20}  {'created':<20}  {'revoked':<20}  name")
    for key in keys:
        revoked = key.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.revoked_at else "-"
        created = key.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{key.key_id:<16}  {key.tenant_id:<20}  {created:<20}  {revoked:<20}  {key.name}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from invoicing.ledger.api_keys import PostgresApiKeys

    engine = _engine(args.data_dir)
    try:
        revoked = PostgresApiKeys(engine).revoke(args.key_id)
    finally:
        engine.dispose()
    if revoked is None:
        raise InvalidValue("key_id", f"no key {args.key_id!r}")
    print(f"revoked {revoked.key_id} of tenant {revoked.tenant_id}")
    return 0
