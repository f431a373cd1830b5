"""Outbox and inbox tables.

Revision ID: outbox_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "outbox_0001"
down_revision = None
branch_labels = ("outbox",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("outbox_messages_unsent", "outbox_messages", ["sent_at", "shard", "position"])
    op.create_table(
        "outbox_inbox",
        sa.Column("group_name", sa.String(200), primary_key=True),
        sa.Column("envelope_id", sa.String(36), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("outbox_inbox_handled_at", "outbox_inbox", ["handled_at"])


def downgrade() -> None:
    op.drop_table("outbox_inbox")
    op.drop_table("outbox_messages")
