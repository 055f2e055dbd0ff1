"""The ledger: plans, invoices and their lines, gapless numbering, credits, billed usage, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSON, JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")
CHAR3 = sa.CHAR(3)


def upgrade() -> None:
    """One function per group of tables, called in the order the tables were always created."""
    _plans()
    _invoices()
    _credits()
    _billed_usage()
    _outbox()


def _plans() -> None:
    op.create_table(
        "plans",
        sa.Column("tenant_id", sa.String, primary_key=True),
        sa.Column("code", sa.String, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("snapshot", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )


def _invoices() -> None:
    """Invoices, their line items and the gapless per-tenant counters."""
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("subscription_id", sa.String, nullable=False),
        sa.Column("billing_period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billing_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency_code", CHAR3, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("invoice_number", sa.String),
        sa.Column("issued_at", sa.DateTime(timezone=True)),
        sa.Column("plan_code", sa.String, nullable=False),
        *(
            sa.Column(name, sa.BigInteger, nullable=False)
            for name in (
                "subtotal",
                "discount_total",
                "tax_total",
                "total",
                "credits_applied",
                "amount_paid",
                "amount_due",
            )
        ),
        sa.Column("metadata", JSON, nullable=False),
        sa.UniqueConstraint("subscription_id", "billing_period_start", name="invoices_one_per_period"),
        sa.UniqueConstraint("tenant_id", "invoice_number", name="invoices_number_unique"),
    )
    op.create_index("invoices_by_tenant", "invoices", ["tenant_id", "subscription_id"])
    op.create_table(
        "invoice_line_items",
        sa.Column("invoice_id", sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency_code", CHAR3, nullable=False),
        sa.Column("quantity", sa.Numeric),
        sa.Column("unit_price", sa.Numeric),
        sa.Column("metric_code", sa.String),
        sa.Column("metadata", JSON, nullable=False),
    )
    op.create_table(
        "invoice_sequences",
        sa.Column("tenant_id", sa.String, primary_key=True),
        sa.Column("last_number", sa.BigInteger, nullable=False),
    )


def _credits() -> None:
    """Credit notes add to a subscription's balance, credit usage spends from it."""
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String, nullable=False),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency_code", CHAR3, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("invoice_number", sa.String),
    )
    op.create_index("ix_credit_notes_subscription_id", "credit_notes", ["subscription_id"])
    op.create_table(
        "credit_usage",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency_code", CHAR3, nullable=False),
        sa.Column("invoice_number", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("ix_credit_usage_subscription_id", "credit_usage", ["subscription_id"])


def _billed_usage() -> None:
    op.create_table(
        "billed_usage",
        sa.Column("subscription_id", sa.String, primary_key=True),
        sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("metric_code", sa.String, primary_key=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quantity", sa.Numeric, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency_code", CHAR3, nullable=False),
        sa.Column("plan_code", sa.String, nullable=False),
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("share_numerator", sa.BigInteger, nullable=False),
        sa.Column("share_denominator", sa.BigInteger, nullable=False),
        sa.Column("allow_overage", sa.Boolean, nullable=False),
    )


def _outbox() -> None:
    """Events committed with their change; the partial index finds what is left to publish."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    for table in (
        "outbox",
        "billed_usage",
        "credit_usage",
        "credit_notes",
        "invoice_sequences",
        "invoice_line_items",
        "invoices",
        "plans",
    ):
        op.drop_table(table)
