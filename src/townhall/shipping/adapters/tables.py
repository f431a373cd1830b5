"""Shipping's table (prefix `shipping_`); only shipping's adapters touch it."""

import sqlalchemy as sa

metadata = sa.MetaData()
Time = sa.DateTime(timezone=True)

shipments = sa.Table(
    "shipping_shipments",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("shipment_id", sa.String(255)),
    sa.Column("reason", sa.String(100)),
    sa.Column("tracking", sa.String(255)),  # shipping_0002_dispatch
    sa.Column("dispatched_at", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)
