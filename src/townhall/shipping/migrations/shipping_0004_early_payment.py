"""Shipping: a payment captured before the order is heard of is kept (its message), and the
parcel is booked when the order arrives (issue 21, choreography).

Revision ID: shipping_0004_early_payment
Revises: shipping_0003_choreography
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "shipping_0004_early_payment"
down_revision: str | None = "shipping_0003_choreography"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipping_orders") as batch:
        batch.add_column(sa.Column("paid_message_id", sa.String(64)))
        batch.add_column(sa.Column("paid_correlation_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("shipping_orders") as batch:
        batch.drop_column("paid_correlation_id")
        batch.drop_column("paid_message_id")
