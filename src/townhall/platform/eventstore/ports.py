"""The EventStore port: streams of events with expected-version appends and one global order.

Values here are plain frozen dataclasses; the adapters turn them into rows and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection


class ExpectedVersion(Enum):
    """The two symbolic expectations an append can state instead of a version number."""

    NO_STREAM = "no stream"  # the stream must not exist yet (same as version 0)
    ANY = "any"  # append whatever the stream's version is


NO_STREAM: Final = ExpectedVersion.NO_STREAM
ANY: Final = ExpectedVersion.ANY

Expected = int | ExpectedVersion


class VersionConflict(Exception):
    """An append stated a version the stream is not at; nothing was written."""

    def __init__(self, stream_id: str, expected: Expected, actual: int) -> None:
        shown = expected.value if isinstance(expected, ExpectedVersion) else expected
        super().__init__(f"stream {stream_id!r}: expected version {shown}, actual {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class NewEvent:
    """An event to append. `schema_version` None means the type's current schema version."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: UUID | None = None  # a UUIDv7 is made when None
    schema_version: int | None = None


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: `version` is 1-based and gapless per stream, `position` global."""

    id: UUID
    stream_id: str
    version: int
    position: int
    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any]
    recorded_at: datetime
    schema_version: int = 1

    @property
    def correlation_id(self) -> str | None:
        value = self.metadata.get("correlation_id")
        return None if value is None else str(value)

    @property
    def causation_id(self) -> str | None:
        value = self.metadata.get("causation_id")
        return None if value is None else str(value)


@dataclass(frozen=True)
class Snapshot:
    """An aggregate's state as of `version` of its stream."""

    stream_id: str
    version: int
    state: Any
    schema_version: int = 1
    recorded_at: datetime | None = None


# A subscription handler receives one batch and the connection of the transaction that will
# also save the subscription's checkpoint: a projection in the same database writes through it.
Handler = Callable[[Sequence[RecordedEvent], AsyncConnection], Awaitable[None]]


class EventStore(Protocol):
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: Expected = ANY,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Append atomically; return the stream's new version.

        Raise `VersionConflict` (writing nothing) when the stream is not at
        `expected_version`. With `conn`, the events join that open transaction and become
        visible when the caller commits.
        """
        ...

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        until: datetime | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[RecordedEvent]:
        """The stream's events after `from_version`, recorded at or before `until`."""
        ...

    async def read_all(
        self, *, from_position: int = 0, limit: int = 1000, conn: AsyncConnection | None = None
    ) -> list[RecordedEvent]:
        """Up to `limit` events after `from_position`, in global order.

        A reader that has seen position N never later finds an event below N appear.
        """
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it does not exist."""
        ...

    async def head_position(self) -> int:
        """The position of the last committed event; 0 when the store is empty."""
        ...

    async def save_snapshot(
        self, stream_id: str, version: int, state: Any, *, schema_version: int = 1
    ) -> None: ...

    async def load_snapshot(self, stream_id: str) -> Snapshot | None: ...

    async def close(self) -> None: ...
