"""The catalog's subscriptions, each on a saved plan version (announced through the outbox).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("plan_code", sa.String, nullable=False),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timezone", sa.String, nullable=False),
        sa.Column("region_code", sa.String),
        sa.Column("allow_overage_billing", sa.Boolean, nullable=False),
        sa.Column("trial_days", sa.Integer, nullable=False),
        sa.Column("trial_balance", sa.Numeric),
        sa.Column("has_payment_method", sa.Boolean, nullable=False),
        sa.Column("coupon_code", sa.String),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "plan_code", "plan_version"],
            ["plans.tenant_id", "plans.code", "plans.version"],
            name="subscriptions_plan_version",
        ),
    )
    op.create_index("subscriptions_by_tenant", "subscriptions", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("subscriptions")
