"""Delivering: a channel's worker handles `DeliveryRequested` messages (a stateless consumer of
the channel's group). For each delivery it decides (skip, hold for quiet hours, put in the
inbox, or send), claims it, sends through the channel's sender and records the outcome. A
delivery recorded SENT is never sent again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from townhall.notifications.domain import (
    Channel,
    ContactPoints,
    Delivered,
    Delivery,
    DeliveryStatus,
    DeviceToken,
    Hold,
    Permanent,
    SendOutcome,
    Skip,
    Transient,
    compose_messages,
    decide,
)
from townhall.notifications.messages import DeliveryRequested
from townhall.notifications.ports import (
    Deliveries,
    DeliveryToSend,
    Devices,
    Recipient,
    Recipients,
    Rendering,
    Sender,
)
from townhall.notifications.service.errors import UnknownRecipient
from townhall.platform.clock import Clock
from townhall.platform.messaging import Envelope, Retry
from townhall.platform.observability import get_logger
from townhall.platform.slots import Slots

log = get_logger("townhall.notifications")

# A worker whose write finds the delivery changed since it read it reads it again, at most
# this many times in a row, then leaves the message to the bus's retry.
CLAIM_READS = 3
CLAIM_RETRY_SECONDS = 1.0
IN_FLIGHT = 100  # at most this many deliveries under way in one worker


class DeliveryFailed(Exception):
    """Raised on the last attempt so the bus moves the message to the dead-letter store."""


class TransientFailure(Exception):
    """A transient provider answer: the bus retries with its backoff and jitter."""


class DeliveryWorker:
    """Handles one channel's `DeliveryRequested` messages."""

    def __init__(
        self,
        channel: Channel,
        deliveries: Deliveries,
        devices: Devices,
        recipients: Recipients,
        sender: Sender[Any] | None,
        clock: Clock,
        *,
        max_attempts: int,
        claim_seconds: float = 60.0,
    ) -> None:
        if sender is None and channel is not Channel.IN_APP:
            raise ValueError(f"the {channel.value} channel needs a sender")
        self.channel = channel
        self._deliveries = deliveries
        self._devices = devices
        self._recipients = recipients
        self._sender = sender
        self._clock = clock
        self._max_attempts = max_attempts
        self._claim_time = timedelta(seconds=claim_seconds)
        # Deliveries under way at once, across messages: a message may ask for many, and a
        # delivery is claimed only once it has a slot, so a claim is sent well before it ends.
        # A message's deliveries take their slots together, so they reach the store together
        # too (its adapter may then read and claim them as one batch each).
        self._in_flight = Slots(IN_FLIGHT)

    async def handle(self, envelope: Envelope) -> None:
        """Deliver what the message asks for: one delivery, or many (then concurrently, each
        on its own). If some fail, the message is retried (or dead-lettered on its last
        attempt) as a whole; on the retry, what was sent or skipped meanwhile is not sent
        again, nor is a delivery that failed for good unless an operator replays the message.
        """
        asked = DeliveryRequested.from_payload(envelope.payload).asked
        outcomes: list[BaseException | None] = []
        for start in range(0, len(asked), IN_FLIGHT):
            outcomes += await self._deliver_together(envelope, asked[start : start + IN_FLIGHT])
        failures: list[Exception] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                failures.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome  # cancelled: we are stopping
        if failures:
            raise one_failure(failures, len(asked))

    async def _deliver_together(
        self, envelope: Envelope, asked: Sequence[tuple[str, str | None]]
    ) -> list[BaseException | None]:
        """Deliver `asked` concurrently once there are slots for all of them; each gives its
        slot back when it ends."""
        await self._in_flight.take(len(asked))
        given = 0

        async def deliver(notification_id: str, recipient_id: str | None) -> None:
            nonlocal given
            try:
                await self._deliver(envelope, notification_id, recipient_id)
            finally:
                given += 1
                self._in_flight.give()

        try:
            return await asyncio.gather(
                *(deliver(nid, recipient) for nid, recipient in asked), return_exceptions=True
            )
        finally:
            self._in_flight.give(len(asked) - given)  # those cancelled before they started

    async def _deliver(
        self, envelope: Envelope, notification_id: str, recipient_id: str | None
    ) -> None:
        if recipient_id is None:  # a message from before the recipient rode along
            recipient_id = await self._deliveries.recipient_of(notification_id)
        if recipient_id is None:
            log.warning("notification not found", notification_id=notification_id)
            return
        claim = await self._claim(notification_id, recipient_id, resend_failed=envelope.replayed)
        if claim is None:
            return  # nothing to send: done already, skipped, held or put in the inbox
        delivery, version, contacts, rendering = claim
        outcome, dead_tokens = await self._send(delivery.notification_id, contacts, rendering)
        final = isinstance(outcome, Permanent) or envelope.attempt >= self._max_attempts
        done = self._clock.now()
        assert self._sender is not None
        # `delivery` is as this worker claimed it (SENDING, no attempts loaded); the outcome
        # is written only if the delivery is still at the version of that claim.
        delivery.record(done, self._sender.name, outcome, final=final)
        if not await self._deliveries.finish(delivery, version, delivery.attempts[-1], done):
            return  # another worker took it over (this claim ran out) or finished it
        for token in dead_tokens:
            await self._devices.remove(token)
        if isinstance(outcome, Transient):
            if final:
                raise DeliveryFailed(f"{self.channel.value}: {outcome.error}")
            if outcome.retry_after is not None:
                raise Retry(outcome.retry_after, outcome.error)
            raise TransientFailure(outcome.error)

    async def _claim(
        self, notification_id: str, recipient_id: str, *, resend_failed: bool
    ) -> tuple[Delivery, int, ContactPoints, Rendering] | None:
        """Decide what to do with the delivery and write that decision: skip, hold, put in
        the inbox, or claim it for sending (SENDING until now + the claim time). Returns the
        claim (the delivery, its version, where to send, what) when there is something to
        send.

        No lock is held: the delivery is read, the decision made, and written only if the
        delivery's version is still the one read. A writer that came in between (a second
        copy of the message, the releaser of held deliveries) makes this read again.

        A FAILED delivery is sent again only if `resend_failed` (a replayed message): the
        retry of a message for many deliveries must not resend one that failed for good."""
        for _ in range(CLAIM_READS):
            found, recipient, devices = await self._read(notification_id, recipient_id)
            now = self._clock.now()
            if found is None:
                log.warning("delivery not found", notification_id=notification_id)
                return None
            if not found.delivery.should_send:
                return None  # SENT or SKIPPED already: a redelivered message sends nothing
            if found.delivery.status is DeliveryStatus.FAILED and not resend_failed:
                return None  # failed for good by an earlier attempt; a replay sends it again
            if recipient is None:
                raise UnknownRecipient(f"no user {recipient_id}", field="recipient")
            delivery, claimed = found.delivery, found.claimed_until
            if delivery.status is DeliveryStatus.SENDING and claimed and claimed > now:
                # Another worker is sending it right now; look again once its claim ends.
                raise Retry((claimed - now).total_seconds(), "delivery claimed by a worker")
            if found.recipient != recipient_id:
                raise ValueError(f"the message names another recipient than {notification_id}")
            contacts = ContactPoints(recipient.email, recipient.phone, devices)
            decision = decide(self.channel, found.category, found.preferences, contacts, now)
            if isinstance(decision, Skip):
                delivery.skip(decision.reason)
            elif isinstance(decision, Hold) and delivery.status is DeliveryStatus.PENDING:
                delivery.hold(decision.until)  # the releaser puts it back on the bus then
            else:
                delivery.start_sending()
            if self.channel is Channel.IN_APP and delivery.status is DeliveryStatus.SENDING:
                # The inbox row is the in-app delivery: written with SENT, exactly once.
                delivery.record(now, "inbox", Delivered(notification_id), final=True)
                if await self._deliveries.put_in_inbox(found, now):
                    return None
                continue  # changed since it was read: read it again
            if delivery.status is DeliveryStatus.SENDING:
                claimed_now = await self._deliveries.claim(
                    self.channel, notification_id, found.version, now, self._claim_time
                )
                if claimed_now:
                    return delivery, found.version + 1, contacts, found.rendering
                continue  # changed since it was read: read it again
            if await self._deliveries.save(delivery, now, found.version):
                return None  # skipped or held
            # changed since it was read: read it again
        raise Retry(CLAIM_RETRY_SECONDS, "the delivery kept changing while it was claimed")

    async def _read(
        self, notification_id: str, recipient_id: str
    ) -> tuple[DeliveryToSend | None, Recipient | None, tuple[DeviceToken, ...]]:
        """The delivery, its recipient's contact and (for push) devices, read at once."""
        if self.channel is Channel.PUSH:
            found, recipient, devices = await asyncio.gather(
                self._deliveries.to_send(self.channel, notification_id),
                self._recipients.find(recipient_id),
                self._devices.of_user(recipient_id),
            )
            return found, recipient, devices
        found, recipient = await asyncio.gather(
            self._deliveries.to_send(self.channel, notification_id),
            self._recipients.find(recipient_id),
        )
        return found, recipient, ()

    async def _send(
        self, notification_id: uuid.UUID, contacts: ContactPoints, rendering: Rendering
    ) -> tuple[SendOutcome, list[str]]:
        assert self._sender is not None
        messages = compose_messages(
            notification_id,
            self.channel,
            contacts,
            rendering.subject,
            rendering.body,
            rendering.html,
        )
        outcomes = [await self._sender.send(message) for message in messages]
        dead = [
            message.device.token  # type: ignore[union-attr]
            for message, outcome in zip(messages, outcomes, strict=True)
            if isinstance(outcome, Permanent) and outcome.token_dead
        ]
        for kind in (Delivered, Transient):
            for outcome in outcomes:
                if isinstance(outcome, kind):
                    return outcome, dead
        return (outcomes[0] if outcomes else Permanent("nothing to send")), dead


def one_failure(failures: Sequence[Exception], asked: int) -> Exception:
    """What a message for `asked` deliveries raises when `failures` of them failed: an error
    that is not a provider's transient answer if there is one (the bus backs off, or
    dead-letters it), else a transient failure (backoff), else the longest `Retry`. A
    message for one delivery raises that delivery's error as it is."""
    if asked == 1:
        return failures[0]
    summary = f"{len(failures)} of {asked} deliveries failed, first: {failures[0]}"
    for failure in failures:
        if not isinstance(failure, Retry | TransientFailure):
            return failure
    delays = [failure.after for failure in failures if isinstance(failure, Retry)]
    if len(delays) < len(failures):
        return TransientFailure(summary)
    return Retry(max(delays), summary)
