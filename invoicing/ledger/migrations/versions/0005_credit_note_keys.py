"""Credit notes get an optional idempotency key (``CreditService.CreateCreditNote``), unique per
subscription, so a retried request never credits twice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("credit_notes", sa.Column("idempotency_key", sa.String))
    op.create_index(
        "credit_notes_idempotency",
        "credit_notes",
        ["subscription_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("credit_notes_idempotency", table_name="credit_notes")
    op.drop_column("credit_notes", "idempotency_key")
