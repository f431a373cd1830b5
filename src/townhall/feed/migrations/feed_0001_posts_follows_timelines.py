"""Feed: posts, likes, comments, follows, users (follower counts, last reads), the durable
home timelines and affinities.

Revision ID: feed_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feed_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("feed",)
depends_on: str | Sequence[str] | None = None

# Ids compared byte by byte on PostgreSQL (UUIDv7 strings: their order is creation order).
Id = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")
NOT_DELETED = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "feed_posts",
        sa.Column("id", Id, primary_key=True),  # UUIDv7: sorts as made
        sa.Column("author", Id, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("attachments", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("like_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("comment_count", sa.Integer, nullable=False, server_default="0"),
    )
    # Only the posts that are not deleted: every read by author skips the deleted ones.
    op.create_index(
        "ix_feed_posts_author_id",
        "feed_posts",
        ["author", "id"],
        postgresql_where=NOT_DELETED,
        sqlite_where=NOT_DELETED,
    )
    op.create_table(
        "feed_likes",
        sa.Column("post_id", Id, primary_key=True),
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feed_comments",
        sa.Column("id", Id, primary_key=True),
        sa.Column("post_id", Id, nullable=False),
        sa.Column("author", Id, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_feed_comments_post_id", "post_id", "id"),
    )
    op.create_table(
        "feed_follows",
        sa.Column("follower", Id, primary_key=True),
        sa.Column("followee", Id, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_feed_follows_followee_follower", "followee", "follower"),
    )

    op.create_table(
        "feed_users",
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("follower_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_read_at", sa.DateTime(timezone=True)),
        sa.Column("read_time", sa.Boolean, nullable=False, server_default=sa.false()),
    )

    op.create_table(
        "feed_timeline",
        sa.Column("owner", Id, primary_key=True),
        sa.Column("post_id", Id, primary_key=True),
        sa.Column("author", Id, nullable=False),
        sa.Index("ix_feed_timeline_owner_author", "owner", "author"),
        sa.Index("ix_feed_timeline_post_id", "post_id"),
    )
    op.create_table(
        "feed_affinities",
        sa.Column("reader", Id, primary_key=True),
        sa.Column("author", Id, primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "feed_affinities",
        "feed_timeline",
        "feed_users",
        "feed_follows",
        "feed_comments",
        "feed_likes",
        "feed_posts",
    ):
        op.drop_table(table)
