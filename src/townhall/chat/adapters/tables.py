"""Chat's tables (prefix `chat_`); only chat's adapters touch them.

Rooms and members live in the main database. Messages and each room's seq counter live on the
room's message-store shard (`message_metadata`: the main database by default, or the databases
`TOWNHALL_CHAT_SHARDS` lists).
"""

import sqlalchemy as sa

metadata = sa.MetaData()
message_metadata = sa.MetaData()

rooms = sa.Table(
    "chat_rooms",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("owner", sa.String(36), nullable=False),
    sa.Column("direct_key", sa.String(80), unique=True),  # the 1:1 room of two users
    sa.Column("shard", sa.String(300), nullable=False),  # where its messages are now
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

members = sa.Table(
    "chat_members",
    metadata,
    sa.Column("room_id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), primary_key=True, index=True),
    sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_read_seq", sa.BigInteger, nullable=False, server_default="0"),
)

room_seqs = sa.Table(
    "chat_room_seqs",
    message_metadata,
    sa.Column("room_id", sa.String(36), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    # Set on the shard a room left (`townhall chat rebalance`): a writer that still routes
    # here learns where the room went.
    sa.Column("moved_to", sa.String(300)),
)

messages = sa.Table(
    "chat_messages",
    message_metadata,
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
