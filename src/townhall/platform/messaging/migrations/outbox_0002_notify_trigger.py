"""PostgreSQL: a statement trigger NOTIFYs the relay when outbox rows are inserted.

Before, `enqueue` sent `SELECT pg_notify(...)` itself: a round trip in every transaction that
enqueues. The trigger runs inside the INSERT, once per statement; PostgreSQL delivers the
notification at commit, as before, and folds identical ones of one transaction into one.
SQLite needs nothing: the relay there is woken by a commit hook in the same process.

Revision ID: outbox_0002
"""

from alembic import op

revision = "outbox_0002"
down_revision = "outbox_0001"
branch_labels = None
depends_on = None

CHANNEL = "townhall_outbox"  # the relay LISTENs here (townhall.platform.outbox.CHANNEL)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION outbox_messages_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_messages_notify AFTER INSERT ON outbox_messages "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_messages_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_messages_notify ON outbox_messages")
    op.execute("DROP FUNCTION IF EXISTS outbox_messages_notify()")
