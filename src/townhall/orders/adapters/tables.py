"""Orders' tables (prefix `orders_`); only this module's adapters touch them. The orders
themselves are events in the platform's event store (stream `order-<id>`), not rows here."""

import sqlalchemy as sa

metadata = sa.MetaData()
Time = sa.DateTime(timezone=True)

# One row per saga of the orchestration mode: its state as `Saga.to_data()`, and its durable
# timer, the deadline of what it waits for (null once it waits for nothing), indexed so that
# any process finds the due ones. A choreographed order has a row too (`mode`
# `choreography`): no state to keep, but its phase, its end and the deadline after which it is
# stuck; the orchestrator never reads those rows.
sagas = sa.Table(
    "orders_sagas",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("data", sa.JSON, nullable=False),
    # Bumped by every save; a save applies only at the version its writer read.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16)),  # the order's end once decided
    sa.Column("deadline", Time),
    sa.Column("attempt", sa.Integer),  # of the command waited on; a stuck compensation grows it
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False, server_default="orchestration"),
    sa.Index("orders_sagas_deadline", "deadline"),
)

# The saga's timeline: every input the orchestrator handled and every message it sent.
saga_steps = sa.Table(
    "orders_saga_steps",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("module", sa.String(32), nullable=False),
    sa.Column("message_type", sa.String(100), nullable=False),
    sa.Column("message_id", sa.String(36), nullable=False),
    sa.Column("correlation_id", sa.String(64)),
    sa.Column("causation_id", sa.String(64)),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Index("orders_saga_steps_order", "order_id", "id"),
)

# The buyers' idempotency keys of `POST /orders`: one order per (buyer, key), and the
# fingerprint of the request that first used the key (another body with it is refused).
idempotency_keys = sa.Table(
    "orders_idempotency_keys",
    metadata,
    sa.Column("buyer_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

# --- read models (CQRS), fed by the projections of `adapters/sql/read_models.py` -----------
# Rebuildable from the event store at any time: nothing on the write side reads them.

# `orders.summaries`: one row per order, as its events left it; `position` is the global
# position of the last event applied (an event at or below it is not applied again).
summaries = sa.Table(
    "orders_summaries",
    metadata,
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
    # A buyer's orders, newest first, paged by (created_at, order_id).
    sa.Index("orders_summaries_buyer", "buyer_id", "created_at", "order_id"),
)

# `orders.sales`: confirmed sales per product per day (UTC, the day of `OrderConfirmed`).
sales = sa.Table(
    "orders_sales",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("revenue_cents", sa.BigInteger, nullable=False),
    sa.Column("orders", sa.Integer, nullable=False),
)

# The sales projection's own memory of each order's basket (from `OrderPlaced`), needed when
# `OrderConfirmed` comes. `state`: `open`, then `counted` once its sales are added (a
# confirmation counts once) or `void` when the order fails or is cancelled (lines emptied).
sales_baskets = sa.Table(
    "orders_sales_baskets",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),
)
