"""Notifications' stores on SQLAlchemy Core, for SQLite and PostgreSQL: one class per port of
`notifications.ports`, over the tables of `adapters/tables.py`."""

from townhall.notifications.adapters.sql.deliveries import SqlDeliveries
from townhall.notifications.adapters.sql.inbox import SqlInbox
from townhall.notifications.adapters.sql.requests import SqlNotificationRequests
from townhall.notifications.adapters.sql.settings import SqlDevices, SqlPreferenceStore

__all__ = [
    "SqlDeliveries",
    "SqlDevices",
    "SqlInbox",
    "SqlNotificationRequests",
    "SqlPreferenceStore",
]
