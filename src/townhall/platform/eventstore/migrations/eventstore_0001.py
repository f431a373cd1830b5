"""Event store: events, the position counter, subscription checkpoints, snapshots.

Revision ID: eventstore_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "eventstore_0001"
down_revision = None
branch_labels = ("eventstore",)
depends_on = None

# On SQLite an INTEGER PRIMARY KEY is the rowid itself: the cheapest clustered key there is.
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "eventstore_events",
        sa.Column("position", POSITION, primary_key=True, autoincrement=False),
        sa.Column("stream_id", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("stream_id", "version", name="eventstore_events_stream_version"),
    )
    # One row holding the last position handed out. Appends take its row lock and hold it to
    # commit, so positions become visible in the order they were given (no gap problem), and
    # a rolled-back append gives its numbers back (no holes).
    op.create_table(
        "eventstore_position",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO eventstore_position (id, last) VALUES (1, 0)")
    op.create_table(
        "eventstore_subscriptions",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "eventstore_snapshots",
        sa.Column("stream_id", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Wake live subscribers on commit (NOTIFY is delivered only if the transaction commits).
        op.execute(
            """
            CREATE FUNCTION eventstore_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              PERFORM pg_notify('eventstore_events', '');
              RETURN NULL;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER eventstore_events_notify AFTER INSERT ON eventstore_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION eventstore_notify()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS eventstore_events_notify ON eventstore_events")
        op.execute("DROP FUNCTION IF EXISTS eventstore_notify()")
    op.drop_table("eventstore_snapshots")
    op.drop_table("eventstore_subscriptions")
    op.drop_table("eventstore_position")
    op.drop_table("eventstore_events")
