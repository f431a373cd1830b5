"""Outbox rows say when their message was settled, not only when it was published.

On a broker, a message is safe once published: `settled_at` is written with `sent_at`. On the
in-process bus it is safe only once every consumer group has acked or dead-lettered it: until
then `settled_at` stays empty, and a relay starting after a crash publishes the row again.
Rows sent before this revision were published to whatever bus ran then: taken as settled.
No index: only a relay on the in-process bus looks for unsettled rows, once as it starts, and
an index would cost every row's insert and update on every bus.

Revision ID: outbox_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "outbox_0003"
down_revision = "outbox_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_messages", sa.Column("settled_at", sa.DateTime(timezone=True)))
    op.execute("UPDATE outbox_messages SET settled_at = sent_at")


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages") as batch:
        batch.drop_column("settled_at")
