"""The EventStore port: streams of events with expected-version appends and one global order.

Values here are plain frozen dataclasses; the adapters turn them into rows and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
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


class _Unset(Enum):
    UNSET = "unset"


_UNSET: Final = _Unset.UNSET
_set = object.__setattr__


class RecordedEvent:
    """An event as stored: `version` is 1-based and gapless per stream, `position` global.

    Immutable. Events read from a store decode `id`, `data`, `metadata` and `recorded_at`
    from their stored form on first access (and upcast `data` then), so a reader that only
    looks at positions, types or streams pays for none of it. `schema_version` is the
    version `data` is given in: the type's current one once upcast.
    """

    __slots__ = (
        "_codec",
        "_data",
        "_id",
        "_metadata",
        "_recorded_at",
        "_row",
        "position",
        "schema_version",
        "stream_id",
        "type",
        "version",
    )
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    _id: UUID | _Unset
    _data: Mapping[str, Any] | _Unset
    _metadata: Mapping[str, Any] | _Unset
    _recorded_at: datetime | _Unset
    _row: Any
    _codec: StoredCodec | None

    def __init__(
        self,
        *,
        id: UUID,
        stream_id: str,
        version: int,
        position: int,
        type: str,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any],
        recorded_at: datetime,
        schema_version: int = 1,
    ) -> None:
        _set(self, "stream_id", stream_id)
        _set(self, "version", version)
        _set(self, "position", position)
        _set(self, "type", type)
        _set(self, "schema_version", schema_version)
        _set(self, "_id", id)
        _set(self, "_data", data)
        _set(self, "_metadata", metadata)
        _set(self, "_recorded_at", recorded_at)
        _set(self, "_row", None)
        _set(self, "_codec", None)

    @classmethod
    def from_stored(
        cls,
        stream_id: str,
        version: int,
        position: int,
        type: str,
        schema_version: int,
        row: Any,
        codec: StoredCodec,
    ) -> RecordedEvent:
        """An event whose other fields `codec` decodes from the stored `row` when first read."""
        event = cls.__new__(cls)
        _set(event, "stream_id", stream_id)
        _set(event, "version", version)
        _set(event, "position", position)
        _set(event, "type", type)
        _set(event, "schema_version", schema_version)
        _set(event, "_id", _UNSET)
        _set(event, "_data", _UNSET)
        _set(event, "_metadata", _UNSET)
        _set(event, "_recorded_at", _UNSET)
        _set(event, "_row", row)
        _set(event, "_codec", codec)
        return event

    @property
    def id(self) -> UUID:
        value = self._id
        if value is _UNSET:
            assert self._codec is not None
            value = self._codec.id(self._row)
            _set(self, "_id", value)
        return value

    @property
    def data(self) -> Mapping[str, Any]:
        value = self._data
        if value is _UNSET:
            assert self._codec is not None
            value = self._codec.data(self._row, self.type)
            _set(self, "_data", value)
        return value

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self._metadata
        if value is _UNSET:
            assert self._codec is not None
            value = self._codec.metadata(self._row)
            _set(self, "_metadata", value)
        return value

    @property
    def recorded_at(self) -> datetime:
        value = self._recorded_at
        if value is _UNSET:
            assert self._codec is not None
            value = self._codec.recorded_at(self._row)
            _set(self, "_recorded_at", value)
        return value

    @property
    def correlation_id(self) -> str | None:
        value = self.metadata.get("correlation_id")
        return None if value is None else str(value)

    @property
    def causation_id(self) -> str | None:
        value = self.metadata.get("causation_id")
        return None if value is None else str(value)

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.stream_id,
            self.version,
            self.position,
            self.type,
            self.data,
            self.metadata,
            self.recorded_at,
            self.schema_version,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, RecordedEvent)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.id, self.stream_id, self.version, self.position))

    def __repr__(self) -> str:
        names = (
            "id stream_id version position type data metadata recorded_at schema_version"
        ).split()
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True))
        return f"RecordedEvent({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, self._fields())


def _rebuild(*fields: Any) -> RecordedEvent:
    names = "id stream_id version position type data metadata recorded_at schema_version"
    return RecordedEvent(**dict(zip(names.split(), fields, strict=True)))


class StoredCodec(Protocol):
    """How an adapter decodes the lazily read fields of a `RecordedEvent` from its row."""

    def id(self, row: Any) -> UUID: ...

    def data(self, row: Any, event_type: str) -> Mapping[str, Any]:
        """The event's data, upcast to the type's current schema."""
        ...

    def metadata(self, row: Any) -> Mapping[str, Any]: ...

    def recorded_at(self, row: Any) -> datetime: ...


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
