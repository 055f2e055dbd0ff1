"""Subscriptions keep their lifecycle instants (issue #13): when the stored revision takes effect
(a cancel or plan change at an instant), the plan before a scheduled plan change, the anchor of the
current plan's periods, the trial's end, and the cancel's instant, request time, mode and reason.
The status on any clock follows from them (``invoicing.engine.subscriptions.status_at``).

Existing rows get their trial's end (start plus the trial days in the subscription's zone); a row
canceled before keeps its written status.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INSTANTS = ("effective_at", "plan_changed_at", "trial_end_at", "cancel_at", "canceled_at")


def upgrade() -> None:
    for name in INSTANTS:
        op.add_column("subscriptions", sa.Column(name, sa.DateTime(timezone=True)))
    op.add_column("subscriptions", sa.Column("previous_plan_code", sa.String))
    op.add_column("subscriptions", sa.Column("previous_plan_version", sa.Integer))
    op.add_column("subscriptions", sa.Column("trial_cut", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column(
        "subscriptions", sa.Column("cancel_at_period_end", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("subscriptions", sa.Column("cancel_reason", sa.String))
    op.execute(
        "UPDATE subscriptions SET trial_end_at = "
        "((start_at AT TIME ZONE timezone) + trial_days * interval '1 day') AT TIME ZONE timezone "
        "WHERE trial_days > 0"
    )
    op.create_index("subscriptions_by_tenant_cancel", "subscriptions", ["tenant_id", "cancel_at"])


def downgrade() -> None:
    op.drop_index("subscriptions_by_tenant_cancel", table_name="subscriptions")
    for name in (*INSTANTS, "previous_plan_code", "previous_plan_version", "trial_cut"):
        op.drop_column("subscriptions", name)
    op.drop_column("subscriptions", "cancel_at_period_end")
    op.drop_column("subscriptions", "cancel_reason")
