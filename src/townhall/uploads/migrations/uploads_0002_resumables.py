"""Uploads: resumable (tus) uploads until they complete.

Revision ID: uploads_0002
Revises: uploads_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "uploads_0002"
down_revision: str | None = "uploads_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "uploads_resumables",
        sa.Column("id", Id, primary_key=True),
        sa.Column("owner", Id, nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("content_type", sa.String(100)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_uploads_resumables_expires_at", "uploads_resumables", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_resumables_expires_at", "uploads_resumables")
    op.drop_table("uploads_resumables")
