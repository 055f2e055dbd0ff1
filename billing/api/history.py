"""A subscription's billing periods as ``billing serve`` answers them: its revision history in the
ledger (``subscription_revisions``, one row per change, written with the change) replayed through
the rater's own calendar (invoicing/engine/calendar.py ``history_calendar``). The periods served,
generated and closed over the API are therefore the periods the loop closes and invoices: cut
where a plan change or cancel cut them, prorated as it prorates them, ending at a cancel."""

from __future__ import annotations

from datetime import datetime

from invoicing.engine.calendar import Revision, history_calendar, served_periods
from invoicing.engine.subscriptions import ClosedPeriod
from invoicing.ports import Ledger
from rating.catalog import Plan
from rating.errors import UnknownReference


def subscription_periods(ledger: Ledger, subscription_id: str, now: datetime) -> list[tuple[ClosedPeriod, bool]]:
    """(period, still open) from the first to the one holding ``now``, oldest first: the ended
    ones as they closed, the open one as it would close at its end."""
    plans: dict[tuple[str, int], Plan] = {}
    revisions = []
    with ledger.session() as session:
        for stored in session.subscription_revisions(subscription_id):
            record, life = stored.record, stored.record.lifecycle
            tenant = record.subscription.tenant_id
            wanted = [(record.subscription.plan_code, record.plan_version)]
            if life.previous_plan_code is not None and life.previous_plan_version is not None:
                wanted.append((life.previous_plan_code, life.previous_plan_version))
            for code, version in wanted:
                if (code, version) not in plans:
                    plan = session.get_plan(tenant, code, version)
                    if plan is None:  # the plans table's foreign key keeps this from happening
                        raise UnknownReference("plan_code", f"tenant {tenant} has no plan {code!r} version {version}")
                    plans[code, version] = plan
            before = plans.get(wanted[1]) if len(wanted) > 1 else None
            revisions.append(
                Revision(
                    record.revision,
                    record.subscription,
                    plans[wanted[0]],
                    life,
                    record.stops_billing,
                    stored.recorded_at,
                    before,
                )
            )
    return served_periods(history_calendar(revisions, now), subscription_id, now)
