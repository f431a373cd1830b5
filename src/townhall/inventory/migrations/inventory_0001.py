"""Inventory: products, stock adjustments, reservations.

Revision ID: inventory_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("inventory",)
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)
# Skus compare byte by byte on PostgreSQL too ("C"), as on SQLite: pages of the catalogue come
# in one order whatever the server's locale, and the primary key's index serves it.
Sku = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inventory_products",
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("on_hand", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.CheckConstraint("reserved >= 0", name="inventory_products_reserved_not_negative"),
        sa.CheckConstraint("on_hand >= reserved", name="inventory_products_reserved_on_hand"),
    )
    op.create_table(
        "inventory_stock_adjustments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("sku", sa.String(64), nullable=False, index=True),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("adjusted_by", sa.String(64), nullable=False),
        sa.Column("at", Time, nullable=False),
    )
    op.create_table(
        "inventory_reservations",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lines", sa.JSON, nullable=False),
        sa.Column("shortages", sa.JSON, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("expires_at", Time),
        sa.Column("settled_at", Time),
        sa.Column("correlation_id", sa.String(64)),
    )
    op.create_index(
        "inventory_reservations_due", "inventory_reservations", ["status", "expires_at"]
    )


def downgrade() -> None:
    op.drop_index("inventory_reservations_due", table_name="inventory_reservations")
    op.drop_table("inventory_reservations")
    op.drop_table("inventory_stock_adjustments")
    op.drop_table("inventory_products")
