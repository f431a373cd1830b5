"""Orders: the read models (CQRS) `orders.summaries` and `orders.sales` (issue 21).

Revision ID: orders_0003_read_models
Revises: orders_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_0003_read_models"
down_revision: str | None = "orders_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders_summaries",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("buyer_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("decline_code", sa.String(64)),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "orders_summaries_buyer", "orders_summaries", ["buyer_id", "created_at", "order_id"]
    )
    op.create_table(
        "orders_sales",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("revenue_cents", sa.BigInteger, nullable=False),
        sa.Column("orders", sa.Integer, nullable=False),
    )
    op.create_table(
        "orders_sales_baskets",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("lines", sa.JSON, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("orders_sales_baskets")
    op.drop_table("orders_sales")
    op.drop_index("orders_summaries_buyer", table_name="orders_summaries")
    op.drop_table("orders_summaries")
