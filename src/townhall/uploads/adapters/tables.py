"""Uploads' tables (prefix `uploads_`); only uploads' adapters touch them."""

import sqlalchemy as sa

metadata = sa.MetaData()

# Upload ids are UUIDv7 strings (creation order); compared byte by byte on PostgreSQL.
Id = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")

uploads = sa.Table(
    "uploads_uploads",
    metadata,
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
    sa.Index("ix_uploads_uploads_owner_id", "owner", "id"),
    sa.Index("ix_uploads_uploads_status_created_at", "status", "created_at"),
)

# Where an upload is shown: `chat.room:<id>`, `feed.post:<id>`.
attachments = sa.Table(
    "uploads_attachments",
    metadata,
    sa.Column("upload_id", Id, primary_key=True),
    sa.Column("audience", sa.String(100), primary_key=True),
)

# Resumable (tus) uploads until they complete; their bytes are partial files.
resumables = sa.Table(
    "uploads_resumables",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("owner", Id, nullable=False),
    sa.Column("length", sa.BigInteger, nullable=False),
    sa.Column("filename", sa.String(255)),
    sa.Column("content_type", sa.String(100)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_uploads_resumables_expires_at", "expires_at"),
)
