"""Deliveries get a version: a worker's write applies only to the version it read.

Workers used to lock the delivery row (SELECT ... FOR UPDATE) for a transaction of five round
trips; now each write is one conditional UPDATE ("... WHERE version = the one I read",
optimistic concurrency), and a writer that finds the version moved on reads again.

Revision ID: notifications_0002
Revises: notifications_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0002"
down_revision: str | None = "notifications_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications_deliveries") as table:
        table.add_column(
            sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications_deliveries") as table:
        table.drop_column("version")
