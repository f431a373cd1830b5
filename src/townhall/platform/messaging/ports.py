"""The MessageBus port: what modules (and users writing their own consumers) program against."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from townhall.platform.messaging.envelope import Envelope

Handler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetter:
    """A message a group gave up on. `envelope` is None when the bytes were not an envelope;
    then `raw` holds them and `id` is the broker's id for them."""

    id: str
    envelope: Envelope | None
    error: str
    attempts: int
    failed_at: datetime
    raw: str = ""


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop fetching; in-flight handlers finish, messages not yet handled go back."""
        ...


class MessageBus(Protocol):
    @property
    def in_process(self) -> bool:
        """True for the in-process bus (`memory://`): its broker is this process's memory, so
        a message published dies with the process until every group has handled it, and no
        other process can see its messages or dead letters."""
        ...

    async def publish(
        self, topic: str, envelope: Envelope, *, on_settled: Callable[[], None] | None = None
    ) -> None:
        """Return once the broker holds the message. On an `in_process` bus, `on_settled` is
        called once every group of the topic has acked or dead-lettered it (the outbox keeps
        the message until then); other buses ignore it: holding the message is enough."""
        ...

    async def subscribe(
        self,
        topic: str,
        group: str,
        handler: Handler,
        *,
        prefetch: int = 100,
        max_attempts: int = 5,
    ) -> Subscription: ...

    async def dead_letters(self, topic: str, group: str) -> list[DeadLetter]: ...

    async def replay(
        self, topic: str, group: str, ids: Sequence[str | uuid.UUID] | None = None
    ) -> int:
        """Put dead letters back for this group only; returns how many. None = all."""
        ...

    async def ping(self) -> None:
        """Raise if the broker cannot be reached (for /readyz)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer group a module runs: `townhall worker NAME` runs the specs named NAME
    (the group), `townhall serve` runs them all."""

    topic: str
    group: str
    handler_factory: Callable[[], Handler]
    prefetch: int = 100
    max_attempts: int = 5
