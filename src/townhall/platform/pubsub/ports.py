"""The pub/sub port: ephemeral broadcast on named channels (chat relay, presence, typing).

Not the bus: nothing is stored. A message reaches the subscribers of its channel that are
connected when it is published, at most once; see README.md for the guarantees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One delivered message. `dropped_before`: how many messages of this subscription were
    dropped just before this one because its buffer was full (0 when none were)."""

    channel: str
    data: bytes
    dropped_before: int = 0


Callback = Callable[[Message], Awaitable[None]]


class Subscription(Protocol):
    """One subscriber's interest in one channel, with its own bounded buffer. Iterate it
    (`async for message in subscription`) or give `subscribe` a callback, not both."""

    channel: str
    dropped: int  # messages dropped on overflow since it was made

    async def unsubscribe(self) -> None:
        """Stop delivery (idempotent): buffered messages are discarded, iteration ends."""
        ...

    def __aiter__(self) -> AsyncIterator[Message]: ...


class PubSub(Protocol):
    async def publish(self, channel: str, data: bytes) -> None:
        """Broadcast `data` to the channel's current subscribers, in every process. Raises
        while the server cannot be reached (nothing is queued for later)."""
        ...

    async def subscribe(
        self, channel: str, callback: Callback | None = None, *, buffer: int | None = None
    ) -> Subscription:
        """Subscribe to one channel; active when this returns (while the server is reachable;
        else as soon as it is again). `buffer` overrides the URL's `buffer` for this one."""
        ...

    async def ping(self) -> None:
        """Raise while the server cannot be reached or subscriptions are being restored."""
        ...

    async def close(self) -> None:
        """End every subscription (their iterations end) and the connection."""
        ...
