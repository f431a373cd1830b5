"""Shipping: the carrier's tracking number and the time it took the parcel of a confirmed order.

Revision ID: shipping_0002_dispatch
Revises: shipping_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "shipping_0002_dispatch"
down_revision: str | None = "shipping_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipping_shipments") as table:
        table.add_column(sa.Column("tracking", sa.String(255)))
        table.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("shipping_shipments") as table:
        table.drop_column("dispatched_at")
        table.drop_column("tracking")
