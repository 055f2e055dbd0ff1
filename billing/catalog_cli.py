"""``billing catalog``: a scenario file's catalog (its terms, plans and subscriptions) into the
ledger, and the stored catalog as JSON.

``apply`` saves everything in ONE ledger transaction, and every created or changed item queues its
outbox message in it (docs/outbox.md), so ``billing relay`` then publishes them to
``catalog.terms``, ``catalog.plans`` and ``catalog.subscriptions``; applying the same file again
changes nothing and queues nothing. The ledger is PostgreSQL from ``DATABASE_URL``, else the
embedded server under ``--data-dir`` (the same default as ``billing relay``).

What the file says is the catalog of its tenant:

* the terms (metrics, tax rules, coupons) replace the tenant's terms (a new revision if they differ);
* a plan is a new version only when it differs from the newest stored version of its code (plan
  versions are immutable: invoices of earlier periods stay priced with the version they were
  billed on), so the first apply saves version 1 and an edited plan becomes version 2;
* each subscription is put on the newest version of its plan, keeping its stored status.

Nothing else is touched: items missing from the file stay as stored, and the file's events and
actions (a simulation's) are left out. Applies of one tenant take turns on its terms row, which
is locked first.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rating.errors import BillingError

if TYPE_CHECKING:  # imported when a catalog command runs, not whenever the CLI parses its arguments
    from billing.simulate.scenario import Scenario
    from invoicing.ports import Ledger

CREATED, CHANGED, UNCHANGED = "created", "changed", "unchanged"


def add_catalog_command(commands: Any) -> None:
    """Register ``billing catalog apply|show`` on the CLI's subcommands."""
    catalog = commands.add_parser("catalog", help="the catalog (terms, plans, subscriptions) in the ledger")
    actions = catalog.add_subparsers(dest="catalog_command", required=True)
    apply = actions.add_parser(
        "apply", help="save a scenario file's terms, plans and subscriptions in one transaction (for billing relay)"
    )
    apply.add_argument("file", help="scenario file, YAML or JSON (design section 5)")
    apply.add_argument("--data-dir", default=".data/ledger", help="embedded PostgreSQL lives here unless $DATABASE_URL")
    apply.set_defaults(run=run_apply)
    show = actions.add_parser("show", help="print the stored catalog as JSON (the values of the catalog topics)")
    show.add_argument("--tenant", default=None, help="only this tenant (default: every tenant)")
    show.add_argument("--data-dir", default=".data/ledger", help="embedded PostgreSQL lives here unless $DATABASE_URL")
    show.set_defaults(run=run_show)


def _change(before: int | None, after: int) -> str:
    """Created, changed or unchanged, from the revisions (or versions) before and after a save."""
    return CREATED if before is None else UNCHANGED if before == after else CHANGED


def apply_catalog(ledger: Ledger, scenario: Scenario) -> dict[str, Any]:
    """Save the scenario's terms, plans and subscriptions in one transaction; a summary of what was
    created, changed or left unchanged. A subscription the ledger refuses (another tenant's id, a
    plan of another tenant) is an error naming it, and nothing is saved."""
    from billing.simulate.runner import terms_of
    from invoicing.engine.subscriptions import SubscriptionStatus, trial_end

    tenant = scenario.tenant_id
    with ledger.session() as session:
        before_terms = session.get_terms(tenant)
        terms = session.save_terms(terms_of(scenario))  # first: its row lock orders concurrent applies
        plans = []
        for plan in scenario.plans:
            version, is_new = session.save_plan_version(tenant, plan)
            change = CREATED if version == 1 and is_new else CHANGED if is_new else UNCHANGED
            plans.append({"code": plan.code, "version": version, "change": change})
        subscriptions = []
        for index, subscription in enumerate(scenario.subscriptions):
            before = session.get_subscription(subscription.id)
            status = SubscriptionStatus.ACTIVE if before is None else before.status
            # a stored subscription keeps its lifecycle (a cancel scheduled through the API); a
            # plan the file changes takes effect when the rater reads it, as before
            lifecycle = None if before is None else before.lifecycle
            if lifecycle is not None and not lifecycle.trial_cut:  # the file may change the trial
                lifecycle = replace(lifecycle, trial_end_at=trial_end(subscription))
            if before is not None and before.subscription.plan_code != subscription.plan_code:
                lifecycle = replace(before.lifecycle, effective_at=None, previous_plan_code=None)
                lifecycle = replace(lifecycle, previous_plan_version=None)
            try:
                record = session.save_subscription(subscription, status=status, lifecycle=lifecycle)
            except BillingError as error:
                raise error.at(f"subscriptions[{index}]") from None
            subscriptions.append(
                {
                    "id": subscription.id,
                    "plan_code": subscription.plan_code,
                    "plan_version": record.plan_version,
                    "revision": record.revision,
                    "change": _change(None if before is None else before.revision, record.revision),
                }
            )
    terms_change = _change(None if before_terms is None else before_terms.revision, terms.revision)
    changes = [terms_change, *(item["change"] for item in (*plans, *subscriptions))]
    return {
        "tenant_id": tenant,
        "terms": {"revision": terms.revision, "change": terms_change},
        "plans": plans,
        "subscriptions": subscriptions,
        "queued": sum(1 for change in changes if change != UNCHANGED),  # outbox messages
        "left_out": {"events": len(scenario.events), "actions": len(scenario.actions)},
    }


def _ledger_url(data_dir: str) -> str:
    """The ledger's URL (billing/database.py), its schema migrated."""
    from billing.database import ledger_url
    from invoicing.ledger.postgres import migrate

    url = ledger_url(Path(data_dir))
    migrate(url)
    return url


def run_apply(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from billing.simulate.scenario_file import load_scenario
    from invoicing.ledger.postgres import PostgresLedger

    scenario = load_scenario(Path(args.file))  # a bad file stops here, before the ledger is opened
    engine = create_engine(_ledger_url(args.data_dir))
    try:
        summary = apply_catalog(PostgresLedger(engine), scenario)
    finally:
        engine.dispose()
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def stored_catalog(ledger: Any, tenant: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The catalog a PostgreSQL ledger holds, as the values its catalog topics carry: every
    tenant's terms, every plan version and every subscription (of ``tenant`` only, if given)."""
    from sqlalchemy import select

    from invoicing.ledger import tables as t
    from invoicing.ledger.json_codec import subscription_to_json, terms_record_to_json

    def where(column: Any, query: Any) -> Any:
        return query if tenant is None else query.where(column == tenant)

    catalog: dict[str, list[dict[str, Any]]] = {"terms": [], "plans": [], "subscriptions": []}
    with ledger.engine.connect() as connection:
        tenants = connection.execute(where(t.tenant_terms.c.tenant_id, select(t.tenant_terms.c.tenant_id))).scalars()
        plans = connection.execute(
            where(t.plans.c.tenant_id, select(t.plans.c.tenant_id, t.plans.c.snapshot)).order_by(
                t.plans.c.tenant_id, t.plans.c.code, t.plans.c.version
            )
        ).all()
        ids = connection.execute(
            where(t.subscriptions.c.tenant_id, select(t.subscriptions.c.id)).order_by(t.subscriptions.c.id)
        ).scalars()
        tenant_ids, subscription_ids = sorted(tenants), list(ids)
    catalog["plans"] = [{"tenant_id": row.tenant_id, **row.snapshot} for row in plans]
    with ledger.session() as session:
        for tenant_id in tenant_ids:
            terms = session.get_terms(tenant_id)
            if terms is not None:
                catalog["terms"].append(terms_record_to_json(terms))
        for subscription_id in subscription_ids:
            record = session.get_subscription(subscription_id)
            if record is not None:
                catalog["subscriptions"].append(subscription_to_json(record))
    return catalog


def run_show(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from invoicing.ledger.postgres import PostgresLedger

    engine = create_engine(_ledger_url(args.data_dir))
    try:
        catalog = stored_catalog(PostgresLedger(engine), args.tenant)
    finally:
        engine.dispose()
    json.dump(catalog, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
