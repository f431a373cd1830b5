"""Payments' table (prefix `payments_`); only payments' adapters touch it."""

import sqlalchemy as sa

metadata = sa.MetaData()
Time = sa.DateTime(timezone=True)

payments = sa.Table(
    "payments_payments",
    metadata,
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

# The choreography's vault: what pays for a choreographed order, handed over by the orders
# module at placement (`PaymentsFacade.vault`), so the card never travels in a public event;
# `status` is where the order's capture is (vaulted -> capturing -> done, or cancelled).
vault = sa.Table(
    "payments_vault",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("payment_method", sa.String(255), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)
