"""Payments: one payment per order.

Revision ID: payments_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "payments_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("payments",)
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payments_payments",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capture_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payment_id", sa.String(255)),
        sa.Column("refunded_cents", sa.BigInteger, nullable=False),
        sa.Column("decline_code", sa.String(100)),
        sa.Column("payment_method", sa.String(255)),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payments_payments")
