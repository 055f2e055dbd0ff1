"""The catalog as the ledger stores and announces it: plan versions and subscriptions.

Saving a plan version or a subscription writes its row and an outbox message in the same
transaction (no dual write); the outbox relay (billing/publish/relay.py) publishes the message to a
compacted topic, where the newest record per key is the current state:

* ``catalog.plans``, key ``tenant_id/plan_code/version``: plan versions are immutable snapshots
  that invoices of older periods are still priced with, so every version keeps its own key (a key
  per plan code would let compaction drop the versions subscriptions still reference). The value
  is the snapshot of invoicing/ledger/json_codec.py with ``tenant_id`` in front.
* ``catalog.subscriptions``, key ``subscription_id`` (unique across tenants, like the invoices'
  one-per-period constraint assumes). The value is
  :func:`invoicing.ledger.json_codec.subscription_to_json`.
* ``catalog.terms``, key ``tenant_id``: the tenant's metrics, tax rules and coupons, one record with
  all of them. The value is ``terms_record_to_json``: ``terms_to_json`` of
  invoicing/ledger/json_codec.py with a ``revision`` that grows with every change.

A save that changes nothing writes no message, so re-running a seed or a finalization that
re-saves its plan adds nothing to the topics.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from invoicing.ledger.json_codec import plan_to_json
from rating.catalog import Plan

CATALOG_PLANS: Final = "catalog.plans"
CATALOG_SUBSCRIPTIONS: Final = "catalog.subscriptions"
CATALOG_TERMS: Final = "catalog.terms"


def plan_key(tenant_id: str, code: str, version: int) -> str:
    return f"{tenant_id}/{code}/{version}"


def plan_version_for(plan: Plan, newest: Plan | None) -> tuple[int, bool]:
    """The version ``plan`` is saved as, and whether that is a new one: 1 for a new code, the
    newest version when the prices are the same (nothing to save), else newest + 1 (versions are
    immutable: invoices stay priced with the version they were billed on)."""
    if newest is None:
        return 1, True
    if plan_to_json(replace(plan, version=newest.version)) == plan_to_json(newest):
        return newest.version, False
    return newest.version + 1, True
