"""ADJUSTMENT and REFUND credit notes act on one invoice: ``invoices.amount_credited`` (ADJUSTMENT
notes taken off ``amount_due``) and ``amount_refunded`` (REFUND notes returned of ``amount_paid``),
both in the invoice's minor units and zero for every invoice stored before.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("amount_credited", "amount_refunded"):
        op.add_column("invoices", sa.Column(name, sa.BigInteger, nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    for name in ("amount_refunded", "amount_credited"):
        op.drop_column("invoices", name)
