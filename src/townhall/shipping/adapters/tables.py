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

# The orders shipping has heard of placed (`orders.OrderPlaced`), with their saga's mode: a
# choreographed one keeps what its shipment needs (`request`, a `CreateShipment` payload) until
# payments reports the money captured; `status`: placed -> creating -> done, or cancelled
# (an orchestrated order is only `orchestrated`: its saga sends commands).
orders = sa.Table(
    "shipping_orders",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("request", sa.JSON),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # The `PaymentCaptured` that came before the order (status `paid`): what the booking answers.
    sa.Column("paid_message_id", sa.String(64)),
    sa.Column("paid_correlation_id", sa.String(64)),
)
