"""Inventory's tables (prefix `inventory_`); only inventory's adapters touch them.

The checks are the last guard of the rule the conditional updates keep: stock is never
negative and never less than what is reserved.
"""

import sqlalchemy as sa

metadata = sa.MetaData()
Time = sa.DateTime(timezone=True)
# Skus compare byte by byte on PostgreSQL too ("C"), as on SQLite: pages of the catalogue come
# in one order whatever the server's locale, and the primary key's index serves it.
Sku = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")

products = sa.Table(
    "inventory_products",
    metadata,
    sa.Column("sku", Sku, primary_key=True),
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

stock_adjustments = sa.Table(
    "inventory_stock_adjustments",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False, index=True),
    sa.Column("delta", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("adjusted_by", sa.String(64), nullable=False),
    sa.Column("at", Time, nullable=False),
)

reservations = sa.Table(
    "inventory_reservations",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),  # [[sku, quantity], ...] in sku order
    sa.Column("shortages", sa.JSON, nullable=False),  # [sku, ...]
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time),
    sa.Column("settled_at", Time),
    sa.Column("correlation_id", sa.String(64)),
    sa.Index("inventory_reservations_due", "status", "expires_at"),
)

# The choreographed orders inventory reserved for on `orders.OrderPlaced` (issue 21): it
# releases their stock on payments' failure or refund, and a cancelled one is never reserved.
choreographed = sa.Table(
    "inventory_choreographed",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("cancelled", sa.Boolean, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)
