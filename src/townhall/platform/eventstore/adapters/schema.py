"""What both SQL recorders share: the tables, the stored form of values, the shared SQL.

Timestamps are turned into their stored form and back here and nowhere else
(`stored_timestamp`, `loaded_timestamp`): PostgreSQL keeps `timestamptz`, SQLite keeps naive
UTC text in the layout SQLAlchemy's own DateTime uses, which sorts like the time it says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

from townhall.platform.eventstore.ports import ANY, NO_STREAM, Expected, NewEvent, RecordedEvent
from townhall.platform.eventstore.upcasting import Upcasters
from townhall.platform.ids import new_id


def stored_timestamp(value: datetime, *, as_text: bool) -> Any:
    """`value` as stored: aware UTC, or (`as_text`, SQLite) naive UTC text that sorts."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware one")
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if as_text else value


def loaded_timestamp(value: Any) -> datetime:
    """A stored timestamp (SQLite text or a driver's datetime) as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    if value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases, through `stored_timestamp`/`loaded_timestamp`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        # SQLite gets plain text, written and parsed by the two functions above
        # (fromisoformat is much faster than SQLAlchemy's generic parser).
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return stored_timestamp(value, as_text=dialect.name == "sqlite")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else loaded_timestamp(value)


metadata = MetaData()
events_table = Table(
    "eventstore_events",
    metadata,
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("stream_id", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("type", String(255), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)
subscriptions_table = Table(
    "eventstore_subscriptions",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
snapshots_table = Table(
    "eventstore_snapshots",
    metadata,
    Column("stream_id", String(255), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

# SQL both databases run as written. Parameters are named (`:name`): SQLAlchemy's text(),
# sqlite3 and (compiled once to `$n`) asyncpg all take them.
STREAM_VERSION = (
    "SELECT coalesce(max(version), 0) FROM eventstore_events WHERE stream_id = :stream_id"
)
HEAD_POSITION = "SELECT coalesce(max(position), 0) FROM eventstore_events"
# The columns a read selects, in the order `RowCodec` reads them.
COLUMNS = (
    "position, stream_id, version, type, schema_version, event_id, data, metadata, recorded_at"
)
READ_ALL = (
    f"SELECT {COLUMNS} FROM eventstore_events WHERE position > :after"
    " ORDER BY position LIMIT :limit"
)
_READ_STREAM = (
    f"SELECT {COLUMNS} FROM eventstore_events WHERE stream_id = :stream_id AND version > :after"
)
READ_STREAM = f"{_READ_STREAM} ORDER BY version"
READ_STREAM_UNTIL = f"{_READ_STREAM} AND recorded_at <= :until ORDER BY version"

# An event row in its stored form, as the inserts take it; `number` adds its version.
Row = dict[str, Any]


def stored_rows(
    stream_id: str, events: Sequence[NewEvent], upcasters: Upcasters, recorded_at: Any
) -> list[Row]:
    """The events' rows: ids made where missing, data and metadata as JSON text."""
    current = upcasters.current_version
    return [
        {
            "stream_id": stream_id,
            "event_id": str(new.id or new_id()),
            "type": new.type,
            "schema_version": new.schema_version or current(new.type),
            "data": json.dumps(dict(new.data)),
            "metadata": json.dumps(dict(new.metadata)),
            "recorded_at": recorded_at,
        }
        for new in events
    ]


def wanted_version(expected: Expected) -> int:
    """An expected version as the append statements take it: -1 for any version."""
    return -1 if expected is ANY else 0 if expected is NO_STREAM else expected


def number(rows: Sequence[Row], current: int) -> Sequence[Row]:
    """Give `rows` the stream's versions after `current` (in place); `rows`."""
    for version, row in enumerate(rows, current + 1):
        row["version"] = version
    return rows


class RowCodec:
    """Decodes a `RecordedEvent`'s lazy fields from the row a read returned (`COLUMNS`)."""

    def __init__(self, upcasters: Upcasters) -> None:
        self._upcasters = upcasters

    def recorded(self, rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
        make = RecordedEvent.from_stored
        return [make(row, self) for row in rows]

    def schema_version(self, row: Sequence[Any]) -> int:
        # The stored version, or the type's current one when data gets upcast to it.
        return max(int(row[4]), self._upcasters.current_versions.get(row[3], 1))

    def id(self, row: Sequence[Any]) -> UUID:
        return UUID(row[5])

    def data(self, row: Sequence[Any]) -> Any:
        return self._upcasters.upcast(row[3], row[4], _json(row[6]))[1]

    def metadata(self, row: Sequence[Any]) -> Any:
        return _json(row[7])

    def recorded_at(self, row: Sequence[Any]) -> datetime:
        return loaded_timestamp(row[8])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value
