"""Notifications' tables (prefix `notifications_`); only this module's adapters touch them."""

import sqlalchemy as sa

metadata = sa.MetaData()
Time = sa.DateTime(timezone=True)

notifications = sa.Table(
    "notifications_notifications",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("recipient", sa.String(36), nullable=False, index=True),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("template", sa.String(64)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("body", sa.Text),
    sa.Column("locale", sa.String(16)),
    sa.Column("created_at", Time, nullable=False),
    # Idempotency: one notification per (requester, key); the hash tells a retry from a misuse.
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("request_hash", sa.String(64)),
    sa.UniqueConstraint("requested_by", "idempotency_key", name="notifications_idempotency"),
)

deliveries = sa.Table(
    "notifications_deliveries",
    metadata,
    sa.Column("notification_id", sa.String(36), primary_key=True),
    sa.Column("channel", sa.String(16), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("skip_reason", sa.String(32)),
    sa.Column("held_until", Time, index=True),
    sa.Column("provider_id", sa.String(255)),
    sa.Column("last_error", sa.Text),
    # What to send, rendered when the request was accepted (a bad template is a 4xx then).
    sa.Column("subject", sa.Text),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("html", sa.Text),
    # A worker that claims the delivery holds it until then; a redelivered message waits.
    sa.Column("claimed_until", Time),
    sa.Column("updated_at", Time, nullable=False),
    # Bumped by every write: a worker writes only if the version is still the one it read.
    sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("0")),
)

attempts = sa.Table(
    "notifications_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.String(36), nullable=False, index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered | transient | permanent
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
)

preferences = sa.Table(
    "notifications_preferences",
    metadata,
    sa.Column("user_id", sa.String(36), primary_key=True),
    sa.Column("opted_out", sa.JSON, nullable=False),  # [[category, channel], ...]
    sa.Column("quiet_start", sa.String(5)),
    sa.Column("quiet_end", sa.String(5)),
    sa.Column("time_zone", sa.String(64)),
)

devices = sa.Table(
    "notifications_devices",
    metadata,
    sa.Column("token", sa.String(512), primary_key=True),
    sa.Column("user_id", sa.String(36), nullable=False, index=True),
    sa.Column("platform", sa.String(8), nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

inbox = sa.Table(
    "notifications_inbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # the notification's id (UUIDv7: sortable)
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("read_at", Time),
    sa.Index("notifications_inbox_user", "user_id", "id"),
)
