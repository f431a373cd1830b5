"""Chat: rooms and members; messages and per-room seqs (the main database's message shard).

Revision ID: chat_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "chat_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("chat",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_rooms",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(36), nullable=False),
        sa.Column("direct_key", sa.String(80), unique=True),
        sa.Column("shard", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "chat_members",
        sa.Column("room_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), primary_key=True, index=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_read_seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "chat_room_seqs",
        sa.Column("room_id", sa.String(36), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("moved_to", sa.String(300)),
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("room_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attachments", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("room_id", "seq", name="uq_chat_messages_room_seq"),
        sa.UniqueConstraint("room_id", "author", "client_id", name="uq_chat_messages_client_id"),
    )


def downgrade() -> None:
    op.drop_table("chat_messages")
    op.drop_table("chat_room_seqs")
    op.drop_table("chat_members")
    op.drop_table("chat_rooms")
