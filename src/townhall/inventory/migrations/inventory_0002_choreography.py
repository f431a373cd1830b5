"""Inventory: the choreographed orders (issue 21).

Revision ID: inventory_0002_choreography
Revises: inventory_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0002_choreography"
down_revision: str | None = "inventory_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_choreographed",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("cancelled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inventory_choreographed")
