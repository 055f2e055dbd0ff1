"""Payments (issue #14): payment methods, payment attempts, the provider events settled (unique per
provider and event id) and the invoice's ``paid_at``.

Revision ID: 0008
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSON

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("paid_at", sa.DateTime(timezone=True)))
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("position", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("subscription_id", sa.String, sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("token", sa.String, nullable=False),
        sa.Column("display_name", sa.String, nullable=False),
        sa.Column("last4", sa.String, nullable=False),
        sa.Column("exp_month", sa.Integer, nullable=False),
        sa.Column("exp_year", sa.Integer, nullable=False),
        sa.Column("provider_data", JSON, nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("payment_methods_by_subscription", "payment_methods", ["tenant_id", "subscription_id"])
    op.create_index(
        "payment_methods_one_default",
        "payment_methods",
        ["subscription_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "payment_attempts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("invoice_id", sa.BigInteger, sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("payment_method_id", sa.String, sa.ForeignKey("payment_methods.id"), nullable=False),
        sa.Column("attempt_number", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency_code", sa.CHAR(3), nullable=False),
        sa.Column("idempotency_key", sa.String, nullable=False, unique=True),
        sa.Column("request_key", sa.String),
        sa.Column("provider_reference", sa.String),
        sa.Column("failure_code", sa.String),
        sa.Column("failure_message", sa.Text),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_retry_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("invoice_id", "attempt_number", name="payment_attempts_number_unique"),
    )
    op.create_index(
        "payment_attempts_request_key",
        "payment_attempts",
        ["invoice_id", "request_key"],
        unique=True,
        postgresql_where=sa.text("request_key IS NOT NULL"),
    )
    op.create_index("payment_attempts_by_reference", "payment_attempts", ["provider_reference"])
    op.create_table(
        "payment_events",
        sa.Column("provider", sa.String, primary_key=True),
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("attempt_id", sa.BigInteger, sa.ForeignKey("payment_attempts.id")),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payment_events")
    op.drop_table("payment_attempts")
    op.drop_table("payment_methods")
    op.drop_column("invoices", "paid_at")
