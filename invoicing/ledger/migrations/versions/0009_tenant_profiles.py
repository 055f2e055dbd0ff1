"""Tenants' profiles: the seller on their invoice PDFs (name, address, tax id), the locale the
figures are written in, and the tenant's own invoice template (NULL: the built-in one).

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_profiles",
        sa.Column("tenant_id", sa.String, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("tax_id", sa.String, nullable=False),
        sa.Column("locale", sa.String, nullable=False),
        sa.Column("template", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )


def downgrade() -> None:
    op.drop_table("tenant_profiles")
