"""The event store: streams with expected-version appends, one gapless global order,
catch-up subscriptions, snapshots and reads as of a time, on SQLite and PostgreSQL.

    store = await connect("sqlite+aiosqlite:///./var/townhall.db")
    version = await store.append("order-42", [NewEvent("OrderPlaced", {...})],
                                 expected_version=NO_STREAM)
"""

from __future__ import annotations

from pathlib import Path

from townhall.platform.clock import Clock
from townhall.platform.db import Database
from townhall.platform.eventstore.adapters.postgresql import PostgresEventStore
from townhall.platform.eventstore.adapters.sql import SqlEventStore
from townhall.platform.eventstore.adapters.sqlite import SqliteEventStore
from townhall.platform.eventstore.ports import (
    ANY,
    NO_STREAM,
    EventStore,
    Expected,
    ExpectedVersion,
    Handler,
    NewEvent,
    RecordedEvent,
    Snapshot,
    Transaction,
    VersionConflict,
)
from townhall.platform.eventstore.projections import (
    Projection,
    Projections,
    ProjectionStatus,
    UnknownProjection,
)
from townhall.platform.eventstore.snapshots import Aggregates, Loaded, SnapshotPolicy
from townhall.platform.eventstore.subscriptions import Subscription
from townhall.platform.eventstore.upcasting import Upcasters

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = [
    "ANY",
    "MIGRATIONS",
    "NO_STREAM",
    "Aggregates",
    "EventStore",
    "Expected",
    "ExpectedVersion",
    "Handler",
    "Loaded",
    "NewEvent",
    "PostgresEventStore",
    "Projection",
    "ProjectionStatus",
    "Projections",
    "RecordedEvent",
    "Snapshot",
    "SnapshotPolicy",
    "SqlEventStore",
    "SqliteEventStore",
    "Subscription",
    "Transaction",
    "UnknownProjection",
    "Upcasters",
    "VersionConflict",
    "connect",
]


async def connect(
    target: str | Database,
    *,
    clock: Clock | None = None,
    upcasters: Upcasters | None = None,
    migrate: bool | None = None,
    poll_interval: float = 1.0,
) -> SqlEventStore:
    """An event store on a database URL (its own engine) or on the app's `Database`.

    `migrate` applies the platform's migrations (the event store's among them) first; it
    defaults to True for a URL and False for a `Database`, whose owner migrates it.
    """
    owns = isinstance(target, str)
    database = Database(target) if isinstance(target, str) else target
    if migrate if migrate is not None else owns:
        from townhall.platform.migrations import migrate as apply_migrations

        await apply_migrations(database, [])
    recorder = SqliteEventStore if database.is_sqlite else PostgresEventStore
    return recorder(
        database,
        clock=clock,
        upcasters=upcasters,
        owns_database=owns,
        poll_interval=poll_interval,
    )
