"""The in-process bus: the embedded default. Same contract within one process, no server.

Buses connected with the same prefix in one process share one broker, so two subscriptions
of a group compete like two processes would on a real broker.

Its messages live in this process's memory only, so a publisher that must not lose one (the
outbox relay) asks to be told when each is settled: acked or dead-lettered by every group
that got it. Until then the outbox keeps the message and republishes it after a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from townhall.platform.messaging.envelope import Envelope
from townhall.platform.messaging.transport import BusOptions, ReceivedMessage

log = logging.getLogger(__name__)

_brokers: dict[str, MemoryBroker] = {}


@dataclass(eq=False)
class _Settlement:
    """One published message that someone waits on: how many groups still hold it."""

    pending: int
    on_settled: Callable[[], None]

    def settle_one(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            _call(self.on_settled)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("a settlement callback failed")


@dataclass
class _GroupPartition:
    ready: deque[ReceivedMessage] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    owner: str | None = None
    expires: float = 0.0


@dataclass
class MemoryBroker:
    groups: dict[str, dict[str, list[_GroupPartition]]] = field(default_factory=dict)
    members: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    dead: dict[tuple[str, str], list[tuple[str, bytes]]] = field(default_factory=dict)
    sequence: int = 0


class MemoryReader:
    def __init__(self, transport: MemoryTransport, state: _GroupPartition, member: str) -> None:
        self.transport = transport
        self.state = state
        self.member = member

    async def fetch(self, count: int, wait: float) -> list[ReceivedMessage]:
        state = self.state
        if not state.ready:
            state.arrived.clear()
            try:
                await asyncio.wait_for(state.arrived.wait(), wait)
            except TimeoutError:
                return []
        got: list[ReceivedMessage] = []
        while state.ready and len(got) < count:
            got.append(state.ready.popleft())
        return got

    batch_acks = False

    async def ack(self, received: ReceivedMessage) -> None:
        # The engine acks a message once its group is done with it: handled, dead-lettered,
        # or skipped (a replay meant for another group).
        if isinstance(received.ref, _Settlement):
            received.ref.settle_one()

    async def ack_many(self, batch: Sequence[ReceivedMessage]) -> None:
        for received in batch:
            await self.ack(received)

    async def renew(self) -> bool:
        if self.state.owner != self.member:
            return False
        self.state.expires = time.monotonic() + self.transport.options.lease_ttl
        return True

    async def release(self, unfinished: Sequence[ReceivedMessage]) -> None:
        for received in reversed(unfinished):
            received.times_received_before += 1
            self.state.ready.appendleft(received)
        if unfinished:
            self.state.arrived.set()
        if self.state.owner == self.member:
            self.state.owner = None


class MemoryTransport:
    in_process = True  # messages and dead letters live in this process's memory only

    def __init__(self, options: BusOptions) -> None:
        self.options = options
        self.broker = _brokers.setdefault(options.prefix, MemoryBroker())

    def _states(self, topic: str, group: str) -> list[_GroupPartition]:
        groups = self.broker.groups.setdefault(topic, {})
        if group not in groups:
            groups[group] = [_GroupPartition() for _ in range(self.options.partitions)]
        return groups[group]

    async def publish(self, topic: str, partition: int, body: bytes) -> None:
        self._put(topic, partition, body, None)

    async def publish_envelope(
        self,
        topic: str,
        partition: int,
        envelope: Envelope,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """The bus's own path: the envelope is handed over as is, without JSON. It is frozen
        and each handler call gets its own headers; the payload object is shared, so handlers
        must treat payloads as read-only (they are copies on every other adapter).

        `on_settled` is called once every group of the topic has acked or dead-lettered the
        message; at once when the topic has no group (nobody will ever get it, as on a broker
        with no queue bound)."""
        self._put(topic, partition, b"", envelope, on_settled)

    def _put(
        self,
        topic: str,
        partition: int,
        body: bytes,
        envelope: Envelope | None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.broker.sequence += 1
        broker_id = str(self.broker.sequence)
        groups = self.broker.groups.get(topic, {})
        settlement = None
        if on_settled is not None:
            if not groups:
                _call(on_settled)
            else:
                settlement = _Settlement(len(groups), on_settled)
        for states in groups.values():
            state = states[partition]
            state.ready.append(
                ReceivedMessage(body, ref=settlement, broker_id=broker_id, envelope=envelope)
            )
            state.arrived.set()

    async def ensure_group(self, topic: str, group: str) -> None:
        self._states(topic, group)

    async def acquire(
        self, topic: str, group: str, partition: int, member: str, prefetch: int
    ) -> MemoryReader | None:
        state = self._states(topic, group)[partition]
        now = time.monotonic()
        if state.owner not in (None, member) and state.expires > now:
            return None
        state.owner, state.expires = member, now + self.options.lease_ttl
        return MemoryReader(self, state, member)

    async def heartbeat(self, topic: str, group: str, member: str) -> list[str]:
        seen = self.broker.members.setdefault((topic, group), {})
        now = time.monotonic()
        seen[member] = now
        for other, at in list(seen.items()):
            if at < now - self.options.lease_ttl:
                del seen[other]
        return sorted(seen)

    async def leave(self, topic: str, group: str, member: str) -> None:
        self.broker.members.get((topic, group), {}).pop(member, None)

    async def add_dead(self, topic: str, group: str, record: bytes) -> None:
        record_id = json.loads(record)["id"]
        self.broker.dead.setdefault((topic, group), []).append((record_id, record))

    async def list_dead(self, topic: str, group: str) -> list[bytes]:
        return [record for _, record in self.broker.dead.get((topic, group), [])]

    async def take_dead(self, topic: str, group: str, ids: set[str]) -> list[bytes]:
        letters = self.broker.dead.get((topic, group), [])
        taken = [record for record_id, record in letters if record_id in ids]
        letters[:] = [(i, r) for i, r in letters if i not in ids]
        return taken

    async def lag(self, topic: str, group: str) -> int | None:
        states = self.broker.groups.get(topic, {}).get(group, [])
        return sum(len(state.ready) for state in states)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
