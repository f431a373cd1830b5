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

# The caller's open transaction (platform-owned, re-exported here for the store's users):
# events appended and checkpoints saved with it commit or roll back with the caller's work.
from townhall.platform.transaction import Transaction as Transaction


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


_set = object.__setattr__
_FIELDS = "position stream_id version type schema_version id data metadata recorded_at".split()


class RecordedEvent:
    """An event as stored: `version` is 1-based and gapless per stream, `position` global.

    Immutable. An event read from a store keeps the row it was read from and decodes `id`,
    `data`, `metadata` and `recorded_at` on first access (upcasting `data` then), so a
    reader that only looks at positions, types or streams pays for none of it.
    `schema_version` is the version `data` is given in: the type's current one once upcast.
    """

    __slots__ = ("_codec", "_decoded", "_row")
    _row: Sequence[Any]  # the fields in _FIELDS order, decoded or as stored
    _codec: StoredCodec | None  # None: `_row` holds the decoded fields
    _decoded: dict[str, Any] | None

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
        row = (position, stream_id, version, type, schema_version, id, data, metadata, recorded_at)
        _set(self, "_row", row)
        _set(self, "_codec", None)
        _set(self, "_decoded", None)

    @classmethod
    def from_stored(cls, row: Sequence[Any], codec: StoredCodec) -> RecordedEvent:
        """An event on a stored row (fields in `_FIELDS` order) that `codec` decodes lazily."""
        event = cls.__new__(cls)
        _set(event, "_row", row)
        _set(event, "_codec", codec)
        _set(event, "_decoded", None)
        return event

    @property
    def position(self) -> int:
        return int(self._row[0])

    @property
    def stream_id(self) -> str:
        return str(self._row[1])

    @property
    def version(self) -> int:
        return int(self._row[2])

    @property
    def type(self) -> str:
        return str(self._row[3])

    @property
    def schema_version(self) -> int:
        if self._codec is None:
            return int(self._row[4])
        return self._codec.schema_version(self._row)

    def _lazy(self, name: str) -> Any:
        codec = self._codec
        if codec is None:
            return self._row[_FIELDS.index(name)]
        decoded = self._decoded
        if decoded is None:
            decoded = {}
            _set(self, "_decoded", decoded)
        elif name in decoded:
            return decoded[name]
        value = decoded[name] = getattr(codec, name)(self._row)
        return value

    @property
    def id(self) -> UUID:
        value: UUID = self._lazy("id")
        return value

    @property
    def data(self) -> Mapping[str, Any]:
        value: Mapping[str, Any] = self._lazy("data")
        return value

    @property
    def metadata(self) -> Mapping[str, Any]:
        value: Mapping[str, Any] = self._lazy("metadata")
        return value

    @property
    def recorded_at(self) -> datetime:
        value: datetime = self._lazy("recorded_at")
        return value

    @property
    def correlation_id(self) -> str | None:
        value = self.metadata.get("correlation_id")
        return None if value is None else str(value)

    @property
    def causation_id(self) -> str | None:
        value = self.metadata.get("causation_id")
        return None if value is None else str(value)

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, RecordedEvent)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.id, self.stream_id, self.version, self.position))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self._fields().items())
        return f"RecordedEvent({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._fields(),))


def _rebuild(fields: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(**fields)


class StoredCodec(Protocol):
    """How an adapter decodes the lazily read fields of a `RecordedEvent` from its row."""

    def schema_version(self, row: Sequence[Any]) -> int:
        """The schema version `data` is read at (the type's current one if upcast)."""
        ...

    def id(self, row: Sequence[Any]) -> UUID: ...

    def data(self, row: Sequence[Any]) -> Mapping[str, Any]:
        """The event's data, upcast to the type's current schema."""
        ...

    def metadata(self, row: Sequence[Any]) -> Mapping[str, Any]: ...

    def recorded_at(self, row: Sequence[Any]) -> datetime: ...


@dataclass(frozen=True)
class Snapshot:
    """An aggregate's state as of `version` of its stream."""

    stream_id: str
    version: int
    state: Any
    schema_version: int = 1
    recorded_at: datetime | None = None


# A subscription handler receives one batch and the `Transaction` that will also save the
# subscription's checkpoint: a projection in the same database writes through it. Typed Any
# so a handler can name the adapter's own type (the SQL adapter's `AsyncConnection`).
Handler = Callable[[Sequence[RecordedEvent], Any], Awaitable[None]]


class EventStore(Protocol):
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: Expected = ANY,
        conn: Transaction | None = None,
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
        conn: Transaction | None = None,
    ) -> list[RecordedEvent]:
        """The stream's events after `from_version`, recorded at or before `until`."""
        ...

    async def read_all(
        self, *, from_position: int = 0, limit: int = 1000, conn: Transaction | None = None
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
