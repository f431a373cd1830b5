"""Orders: a saga row per choreographed order too, told apart by `mode` (issue 21).

Revision ID: orders_0004_choreography
Revises: orders_0003_read_models
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "orders_0004_choreography"
down_revision: str | None = "orders_0003_read_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders_sagas") as batch:
        batch.add_column(
            sa.Column("mode", sa.String(16), nullable=False, server_default="orchestration")
        )


def downgrade() -> None:
    with op.batch_alter_table("orders_sagas") as batch:
        batch.drop_column("mode")
