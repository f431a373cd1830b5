"""Orders' bus entry points: in orchestration mode, consumer group `orders.saga` on the events
of inventory, payments and shipping (each reply goes through its order's saga), and the loop
that fires the sagas' durable timers; in choreography mode, the group `orders.choreography`
on the same topics (each fact recorded on its order, which ends when the facts say so).
Each group ignores the orders of the other mode.

The group needs no inbox table: a saga is its own dedupe (a redelivered or repeated reply is a
`duplicate` to it, recorded in the timeline and changing nothing). A reply that fails to be
handled raises, so the bus retries it; it is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Protocol

from townhall.inventory import events as inventory
from townhall.orders.domain import Reply
from townhall.orders.saga import REPLIES, Handled, Note
from townhall.orders.service import Received
from townhall.payments import events as payments
from townhall.platform.messaging import ConsumerSpec, Envelope
from townhall.platform.observability import get_logger
from townhall.shipping import events as shipping

log = get_logger("townhall.orders")

SAGA_GROUP = "orders.saga"
CHOREOGRAPHY_GROUP = "orders.choreography"
REPLY_TOPICS = (inventory.TOPIC, payments.TOPIC, shipping.TOPIC)
TIMER_INTERVAL = 1.0

REPLY_TYPES: Mapping[str, type[Reply]] = {cls.type: cls for cls in REPLIES}


class Replies(Protocol):
    async def handle(self, reply: Reply, received: Received) -> Handled | None: ...


class Facts(Protocol):
    async def handle(self, reply: Reply, received: Received) -> Note | None: ...


class DueTimers(Protocol):
    async def fire_due(self, *, limit: int = 100) -> int: ...


def reply_from(envelope: Envelope) -> Reply | None:
    """The participant's reply an envelope carries; None for a message that is not one."""
    cls = REPLY_TYPES.get(envelope.type)
    return None if cls is None else cls.from_payload(envelope.payload)


def saga_consumers(
    orchestrator: Replies, *, prefetch: int = 100, max_attempts: int = 5
) -> list[ConsumerSpec]:
    async def on_reply(envelope: Envelope) -> None:
        reply = reply_from(envelope)
        if reply is None:
            return  # another message on a participant's topic: not the saga's business
        await orchestrator.handle(reply, Received.of(envelope))

    return [
        ConsumerSpec(topic, SAGA_GROUP, lambda: on_reply, prefetch, max_attempts)
        for topic in REPLY_TOPICS
    ]


def choreography_consumers(
    choreographer: Facts, *, prefetch: int = 100, max_attempts: int = 5
) -> list[ConsumerSpec]:
    """The group needs no inbox table either: the order records a fact at most once (a
    repeated one is a `duplicate` in the timeline)."""

    async def on_fact(envelope: Envelope) -> None:
        reply = reply_from(envelope)
        if reply is None:
            return
        await choreographer.handle(reply, Received.of(envelope))

    return [
        ConsumerSpec(topic, CHOREOGRAPHY_GROUP, lambda: on_fact, prefetch, max_attempts)
        for topic in REPLY_TOPICS
    ]


class SagaTimers:
    """Fires due saga deadlines every `interval` seconds, in whichever processes run it (the
    deadlines are rows: a restart loses none, and two processes never fire one twice). A failed
    round is logged and the next one tries again."""

    def __init__(
        self, timers: DueTimers, *, interval: float = TIMER_INTERVAL, batch: int = 100
    ) -> None:
        self._timers = timers
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            fired = 0
            try:
                fired = await self._timers.fire_due(limit=self._batch)
                if fired:
                    log.info("saga deadlines fired", count=fired)
            except Exception:
                log.exception("firing saga deadlines failed")
            if fired < self._batch:  # a full batch: more may be due already
                await asyncio.sleep(self._interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="orders.saga-timers")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
