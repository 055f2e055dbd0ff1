"""``billing worker --role payments``: the payment worker on the ledger (DATABASE_URL, else the
embedded PostgreSQL under ``--data-dir``, default .data/ledger), a pass every ``--interval`` seconds
(``--once``: one pass, its report printed as JSON). Providers come from the environment
(billing/payments/providers). One worker per ledger is enough; two are safe (an attempt is begun
under its invoice's row lock) but charge no faster."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from billing.streaming import logging_setup, stop_on_signals

log = logging.getLogger("billing.payments")


def run_payments(args: Any) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from billing.clock import FileClock, SystemClock
    from billing.database import ledger_url
    from billing.payments.metrics import PaymentMetrics
    from billing.payments.providers import configured_providers
    from billing.payments.service import PaymentService, PaymentWorker
    from invoicing.ledger.outage import is_outage, short_description
    from invoicing.ledger.postgres import PostgresLedger, migrate
    from invoicing.ledger.postgres_payments import PostgresPayments
    from rating.errors import BillingError
    from streams.metrics import serve

    logging_setup(args.log_level)
    try:
        providers = configured_providers()
    except BillingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not providers:
        log.warning(
            "no payment provider is configured (STRIPE_API_KEY, XENDIT_SECRET_KEY, MIDTRANS_SERVER_KEY, or "
            "PAYMENTS_DUMMY=on for tests and demos): invoices past due become OVERDUE, nothing is charged"
        )
    url = ledger_url(Path(args.data_dir or ".data/ledger"))
    try:
        migrate(url)
    except OperationalError as error:
        reason = str(error.orig).splitlines()[0] if error.orig is not None else str(error)
        print(f"error: the ledger's PostgreSQL does not answer: {reason}", file=sys.stderr)
        return 1
    engine = create_engine(url, pool_pre_ping=True)
    clock = FileClock(args.clock_file) if args.clock_file else SystemClock()
    metrics = PaymentMetrics()
    worker = PaymentWorker(PaymentService(PostgresPayments(PostgresLedger(engine)), providers, clock.now, metrics))
    if args.metrics_port:
        serve(metrics.registry, args.metrics_port, args.metrics_host)
    should_stop = stop_on_signals()
    try:
        while True:
            try:
                report = worker.run_once()
            except Exception as error:
                if not is_outage(error):
                    raise
                log.warning("ledger unavailable (%s); next pass in %s s", short_description(error), args.interval)
            else:
                if args.once:
                    print(
                        json.dumps(
                            {
                                "overdue": report.overdue,
                                "resumed": [[a.invoice_number, str(a.status)] for a in report.resumed],
                                "charged": [[a.invoice_number, str(a.status)] for a in report.charged],
                                "canceled": report.canceled,
                            }
                        )
                    )
                    return 0
            deadline = time.monotonic() + args.interval
            while time.monotonic() < deadline:
                if should_stop():
                    return 0
                time.sleep(0.2)
    finally:
        engine.dispose()
