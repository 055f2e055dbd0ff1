"""Every revision of a subscription kept (issue #13): ``subscription_revisions`` gets a row with
the subscription's columns each time it is saved, in the same transaction, so the API's billing
periods can be replayed through the rater's calendar (cut where a plan change or cancel cut them).

The backfill can only copy what ``subscriptions`` holds: one row per subscription, its current
revision, ``recorded_at`` its ``updated_at``. The revisions before it are gone: a subscription
whose plan changed before this migration replays as opened on the plan before its latest change
(``previous_plan_code``, when kept) and changed once at ``effective_at``; any earlier plan change,
a catalog file's change, or a trial ended early by its balance before that is not known, and its
periods before the latest change are served as if none happened.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COPIED = (
    "tenant_id, plan_code, plan_version, start_at, timezone, region_code, allow_overage_billing, trial_days, "
    "trial_balance, has_payment_method, coupon_code, status, effective_at, plan_changed_at, trial_end_at, "
    "cancel_at, canceled_at, previous_plan_code, previous_plan_version, trial_cut, cancel_at_period_end, "
    "cancel_reason"
)


def upgrade() -> None:
    instant = sa.DateTime(timezone=True)
    op.create_table(
        "subscription_revisions",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("revision", sa.BigInteger, primary_key=True),
        sa.Column("recorded_at", instant, nullable=False, server_default=sa.text("now()")),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("plan_code", sa.String, nullable=False),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("start_at", instant, nullable=False),
        sa.Column("timezone", sa.String, nullable=False),
        sa.Column("region_code", sa.String),
        sa.Column("allow_overage_billing", sa.Boolean, nullable=False),
        sa.Column("trial_days", sa.Integer, nullable=False),
        sa.Column("trial_balance", sa.Numeric),
        sa.Column("has_payment_method", sa.Boolean, nullable=False),
        sa.Column("coupon_code", sa.String),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("effective_at", instant),
        sa.Column("plan_changed_at", instant),
        sa.Column("trial_end_at", instant),
        sa.Column("cancel_at", instant),
        sa.Column("canceled_at", instant),
        sa.Column("previous_plan_code", sa.String),
        sa.Column("previous_plan_version", sa.Integer),
        sa.Column("trial_cut", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("cancel_at_period_end", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("cancel_reason", sa.String),
        sa.ForeignKeyConstraint(
            ["tenant_id", "plan_code", "plan_version"],
            ["plans.tenant_id", "plans.code", "plans.version"],
            name="subscription_revisions_plan_version",
        ),
    )
    op.execute(
        f"INSERT INTO subscription_revisions (id, revision, recorded_at, {COPIED}) "
        f"SELECT id, revision, updated_at, {COPIED} FROM subscriptions"
    )


def downgrade() -> None:
    op.drop_table("subscription_revisions")
