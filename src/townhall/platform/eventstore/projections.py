"""Named projections: read models fed by a subscription, with rebuild and status.

A projection is a handler plus a `reset` that drops its state. `rebuild` resets the state and
the checkpoint in one transaction, then replays every event from position 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from townhall.platform.eventstore.ports import Handler, Transaction
from townhall.platform.eventstore.subscriptions import Subscription

# Drops a projection's state, in the rebuild's transaction (the adapter's, as `Handler`).
Reset = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Projection:
    name: str
    handler: Handler
    reset: Reset  # drops the projection's state, on the connection of the rebuild transaction
    batch: int = 500


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    checkpoint: int  # last position applied
    head: int  # last position in the store
    lag: int  # events not applied yet


class ProjectionSource(Protocol):
    def subscribe(
        self, name: str, handler: Handler, *, batch: int = 500, poll_interval: float | None = None
    ) -> Subscription: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def lock_checkpoint(self, name: str, conn: Transaction) -> int: ...

    async def delete_checkpoint(self, name: str, conn: Transaction) -> None: ...

    async def checkpoints(self) -> dict[str, int]: ...

    async def head_position(self, conn: Transaction | None = None) -> int: ...


class UnknownProjection(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no projection named {name!r}; known: {', '.join(known) or 'none'}")
        self.name = name


class Projections:
    """The registry of named projections over one store."""

    def __init__(self, store: ProjectionSource) -> None:
        self._store = store
        self._projections: dict[str, Projection] = {}
        self._subscriptions: dict[str, Subscription] = {}

    def register(self, projection: Projection) -> None:
        if projection.name in self._projections:
            raise ValueError(f"projection {projection.name!r} is already registered")
        self._projections[projection.name] = projection

    @property
    def names(self) -> list[str]:
        return sorted(self._projections)

    def get(self, name: str) -> Projection:
        try:
            return self._projections[name]
        except KeyError:
            raise UnknownProjection(name, self.names) from None

    def subscription(self, name: str) -> Subscription:
        """The projection's subscription (one per registry), to start live or catch up."""
        if name not in self._subscriptions:
            projection = self.get(name)
            self._subscriptions[name] = self._store.subscribe(
                name, projection.handler, batch=projection.batch
            )
        return self._subscriptions[name]

    async def start(self, names: Sequence[str] | None = None) -> None:
        """Run the named projections live (all of them when `names` is None)."""
        for name in self.names if names is None else names:
            await self.subscription(name).start()

    async def stop(self) -> None:
        await asyncio.gather(*(sub.stop() for sub in self._subscriptions.values()))

    async def rebuild(self, name: str) -> int:
        """Drop the projection's state and checkpoint, replay from zero; return events applied.

        The reset holds the checkpoint's row lock, so a live subscriber elsewhere waits for it
        and then continues from the fresh checkpoint rather than from its old position.
        """
        projection = self.get(name)
        async with self._store.transaction() as conn:
            await self._store.lock_checkpoint(name, conn)
            await projection.reset(conn)
            await self._store.delete_checkpoint(name, conn)
        return await self.subscription(name).catch_up()

    async def status(self) -> list[ProjectionStatus]:
        checkpoints = await self._store.checkpoints()
        head = await self._store.head_position()
        return [
            ProjectionStatus(name, checkpoints.get(name, 0), head, head - checkpoints.get(name, 0))
            for name in self.names
        ]
