"""Shipping: one shipment per order.

Revision ID: shipping_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "shipping_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("shipping",)
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shipping_shipments",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("shipment_id", sa.String(255)),
        sa.Column("reason", sa.String(100)),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shipping_shipments")
