"""Uploads: the uploads (status, size, hash, scan result) and where each is attached.

Revision ID: uploads_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "uploads_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("uploads",)
depends_on: str | Sequence[str] | None = None

Id = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "uploads_uploads",
        sa.Column("id", Id, primary_key=True),
        sa.Column("owner", Id, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detection", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True)),
        sa.Column("scan_attempts", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_uploads_uploads_owner_id", "uploads_uploads", ["owner", "id"])
    op.create_index(
        "ix_uploads_uploads_status_created_at", "uploads_uploads", ["status", "created_at"]
    )
    op.create_table(
        "uploads_attachments",
        sa.Column("upload_id", Id, primary_key=True),
        sa.Column("audience", sa.String(100), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("uploads_attachments")
    op.drop_index("ix_uploads_uploads_status_created_at", "uploads_uploads")
    op.drop_index("ix_uploads_uploads_owner_id", "uploads_uploads")
    op.drop_table("uploads_uploads")
