"""What an adapter provides underneath the shared consumer engine (`engine.py`).

A topic is split into partitions by key; a group's member consumes a partition only while
it holds the partition's lease, so one key is handled by one member at a time, in order.

The in-process transport (`adapters/memory.py`) also has `in_process = True` and
`publish_envelope(topic, partition, envelope, on_settled)`: its messages live in memory, so it
says when every group is done with one (`MessageBus.in_process`, `outbox.py`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit


@dataclass(eq=False)
class ReceivedMessage:
    """A message as a `PartitionReader` hands it to the engine: fetched from its partition and
    not acked yet. Its bytes (or, in process, its envelope) and the broker's handle to ack it."""

    body: bytes
    ref: Any = None  # the broker's handle for acking
    broker_id: str = ""
    times_received_before: int = 0  # times the broker handed it out before this one
    envelope: Any = None  # already decoded (the in-process bus hands envelopes over as is)


class PartitionReader(Protocol):
    # True: the engine collects the acks of handled messages and sends them with `ack_many`
    # (in order, one call per batch); False: one `ack` per message.
    batch_acks: bool

    async def fetch(self, count: int, wait: float) -> list[ReceivedMessage]:
        """Up to `count` messages, in partition order; [] after `wait` seconds."""
        ...

    async def ack(self, received: ReceivedMessage) -> None: ...

    async def ack_many(self, batch: Sequence[ReceivedMessage]) -> None: ...

    async def renew(self) -> bool:
        """Extend the lease; False once it is lost (another member may hold it)."""
        ...

    async def release(self, unfinished: Sequence[ReceivedMessage]) -> None:
        """Give the lease up; `unfinished` (unacked, in order) go back for the next owner."""
        ...


class Transport(Protocol):
    options: BusOptions

    async def publish(self, topic: str, partition: int, body: bytes) -> None: ...

    async def ensure_group(self, topic: str, group: str) -> None: ...

    async def acquire(
        self, topic: str, group: str, partition: int, member: str, prefetch: int
    ) -> PartitionReader | None:
        """The partition's reader if this member got its lease, else None."""
        ...

    async def heartbeat(self, topic: str, group: str, member: str) -> list[str]:
        """Say this member is alive; the live members of the group, sorted."""
        ...

    async def leave(self, topic: str, group: str, member: str) -> None: ...

    async def add_dead(self, topic: str, group: str, record: bytes) -> None: ...

    async def list_dead(self, topic: str, group: str) -> list[bytes]: ...

    async def take_dead(self, topic: str, group: str, ids: set[str]) -> list[bytes]:
        """Remove and return the dead-letter records whose id is in `ids`."""
        ...

    async def lag(self, topic: str, group: str) -> int | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class BusOptions:
    """Tuning shared by every adapter, from the bus URL's query (`?prefix=t1&partitions=4`)."""

    prefix: str = "townhall"
    partitions: int = 8
    lease_ttl: float = 10.0  # how long a killed member's partitions wait for a new owner
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def rebalance_interval(self) -> float:
        return self.lease_ttl / 4

    @property
    def connection_name(self) -> str:
        """The name this process's broker connections carry (`?connection_name=` overrides
        it), so an operator can tell them apart on the broker (and a test can cut its own)."""
        default = f"townhall-{self.prefix}-{socket.gethostname()}-{os.getpid()}"
        return self.extra.get("connection_name", default)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> BusOptions:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
        query.update({k: str(v) for k, v in overrides.items()})
        options = cls()
        for name, cast in (
            ("prefix", str),
            ("partitions", int),
            ("lease_ttl", float),
            ("backoff_base", float),
            ("backoff_cap", float),
        ):
            if name in query:
                setattr(options, name, cast(query.pop(name)))
        options.extra = query
        if not options.prefix.replace("-", "").replace("_", "").isalnum():
            raise ValueError("bus prefix must be letters, digits, '-' or '_'")
        if options.partitions < 1:
            raise ValueError("partitions must be at least 1")
        return options


def strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def token(name: str) -> str:
    """A topic or group name as one broker-safe token of [a-z0-9_] (injective)."""
    return name.replace("_", "__").replace(".", "_d").replace("-", "_h")
