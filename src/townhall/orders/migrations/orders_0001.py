"""Orders: the orchestrator's sagas (with their durable timers) and their timeline.

Revision ID: orders_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("orders",)
depends_on: str | Sequence[str] | None = None

# A frozen copy of the tables as this revision made them (later revisions spell out changes).
metadata = sa.MetaData()
Time = sa.DateTime(timezone=True)

sagas = sa.Table(
    "orders_sagas",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16)),
    sa.Column("deadline", Time),
    sa.Column("attempt", sa.Integer),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("orders_sagas_deadline", "deadline"),
)

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


def upgrade() -> None:
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
