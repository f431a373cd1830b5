"""The feed's tables (prefix `feed_`); only the feed's adapters touch them."""

import sqlalchemy as sa

metadata = sa.MetaData()

# Post, comment and user ids are UUIDv7 strings whose order is the order they were made in:
# pages and cursors compare them (`id < :before`). On PostgreSQL they are compared byte by
# byte (collation `C`), as Python compares them, whatever the database's default collation.
Id = sa.String(36).with_variant(sa.String(36, collation="C"), "postgresql")
# Deleted posts are in no page: the (author, id) index holds only the others, so an author's
# newest posts are read from it alone (an index-only scan on PostgreSQL), none skipped over.
NOT_DELETED = sa.text("deleted_at IS NULL")

posts = sa.Table(
    "feed_posts",
    metadata,
    sa.Column("id", Id, primary_key=True),  # UUIDv7: sorts as made
    sa.Column("author", Id, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("attachments", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.Column("like_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("comment_count", sa.Integer, nullable=False, server_default="0"),
    sa.Index(
        "ix_feed_posts_author_id",
        "author",
        "id",
        postgresql_where=NOT_DELETED,
        sqlite_where=NOT_DELETED,
    ),
)

likes = sa.Table(
    "feed_likes",
    metadata,
    sa.Column("post_id", Id, primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

comments = sa.Table(
    "feed_comments",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("post_id", Id, nullable=False),
    sa.Column("author", Id, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_feed_comments_post_id", "post_id", "id"),
)

follows = sa.Table(
    "feed_follows",
    metadata,
    sa.Column("follower", Id, primary_key=True),
    sa.Column("followee", Id, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_feed_follows_followee_follower", "followee", "follower"),
)

# One row per user who has followers or has read their feed.
users = sa.Table(
    "feed_users",
    metadata,
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("follower_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_read_at", sa.DateTime(timezone=True)),
    # Set once a post of theirs was not fanned out (a celebrity's): their followers read their
    # posts at read time from then on.
    sa.Column("read_time", sa.Boolean, nullable=False, server_default=sa.false()),
)

# The durable home timelines: what fan-out on write delivered.
timeline = sa.Table(
    "feed_timeline",
    metadata,
    sa.Column("owner", Id, primary_key=True),
    sa.Column("post_id", Id, primary_key=True),
    sa.Column("author", Id, nullable=False),
    sa.Index("ix_feed_timeline_owner_author", "owner", "author"),
    sa.Index("ix_feed_timeline_post_id", "post_id"),
)

affinities = sa.Table(
    "feed_affinities",
    metadata,
    sa.Column("reader", Id, primary_key=True),
    sa.Column("author", Id, primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
)
