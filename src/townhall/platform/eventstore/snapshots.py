"""Snapshots: load an aggregate from its last snapshot plus the events after it.

An aggregate here is a pure fold: `initial()` and `evolve(state, event)`. `Aggregates` reads
the latest snapshot (if its schema matches), replays the events after it, and on save takes a
new snapshot whenever an append crosses a multiple of the stream type's interval. The stream
type is the stream id up to its first "-" (`order-42` -> `order`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from townhall.platform.eventstore.ports import (
    ANY,
    Expected,
    NewEvent,
    RecordedEvent,
    Snapshot,
)

State = TypeVar("State")


def stream_type(stream_id: str) -> str:
    return stream_id.split("-", 1)[0]


@dataclass(frozen=True)
class SnapshotPolicy:
    """Take a snapshot every N events, N per stream type (0 turns snapshots off)."""

    every: int = 100
    per_type: Mapping[str, int] = field(default_factory=dict)

    def interval(self, stream_id: str) -> int:
        return self.per_type.get(stream_type(stream_id), self.every)

    def due(self, stream_id: str, old_version: int, new_version: int) -> bool:
        """True when the versions from old (exclusive) to new (inclusive) cross a multiple."""
        every = self.interval(stream_id)
        return every > 0 and new_version // every > old_version // every


class SnapshotStore(Protocol):
    """The part of the event store `Aggregates` uses."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: Expected = ANY,
        conn: AsyncConnection | None = None,
    ) -> int: ...

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        until: datetime | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[RecordedEvent]: ...

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        state: Any,
        *,
        schema_version: int = 1,
        conn: AsyncConnection | None = None,
    ) -> None: ...

    async def load_snapshot(
        self, stream_id: str, *, conn: AsyncConnection | None = None
    ) -> Snapshot | None: ...


@dataclass(frozen=True)
class Loaded(Generic[State]):
    state: State
    version: int  # the stream version `state` reflects: the expected version of the next save
    replayed: int  # events folded after the snapshot (or from the start)


def _same(value: Any) -> Any:
    return value


class Aggregates(Generic[State]):
    """Loads and saves one kind of aggregate through snapshots and events."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        initial: Callable[[], State],
        evolve: Callable[[State, RecordedEvent], State],
        policy: SnapshotPolicy | None = None,
        to_snapshot: Callable[[State], Any] = _same,
        from_snapshot: Callable[[Any], State] = _same,
        schema_version: int = 1,
    ) -> None:
        self._store = store
        self._initial = initial
        self._evolve = evolve
        self._policy = policy or SnapshotPolicy()
        self._to_snapshot = to_snapshot
        self._from_snapshot = from_snapshot
        self._schema_version = schema_version  # bump when the state's shape changes

    async def load(
        self,
        stream_id: str,
        *,
        until: datetime | None = None,
        conn: AsyncConnection | None = None,
    ) -> Loaded[State]:
        """The aggregate now, or as of `until` (an as-of load replays from the start)."""
        state, version = self._initial(), 0
        snapshot = None
        if until is None:  # on the caller's connection: a second one may never come
            snapshot = await self._store.load_snapshot(stream_id, conn=conn)
        if snapshot is not None and snapshot.schema_version == self._schema_version:
            state, version = self._from_snapshot(snapshot.state), snapshot.version
        events = await self._store.read_stream(
            stream_id, from_version=version, until=until, conn=conn
        )
        for recorded in events:
            state = self._evolve(state, recorded)
        return Loaded(state, events[-1].version if events else version, len(events))

    async def save(
        self,
        stream_id: str,
        loaded: Loaded[State],
        events: Sequence[NewEvent],
        new_state: State,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Append `events` expecting `loaded.version`; snapshot `new_state` when due.

        With `conn` the snapshot joins the caller's transaction, so a rolled-back append
        never leaves a snapshot of a version that does not exist.
        """
        version = await self._store.append(
            stream_id, events, expected_version=loaded.version, conn=conn
        )
        if self._policy.due(stream_id, loaded.version, version):
            await self._store.save_snapshot(
                stream_id,
                version,
                self._to_snapshot(new_state),
                schema_version=self._schema_version,
                conn=conn,
            )
        return version
