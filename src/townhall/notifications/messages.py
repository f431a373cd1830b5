"""The module's own bus message, `DeliveryRequested`: "deliver these notifications on this
channel". Written to the outbox with the notifications it names (by the store adapters) and
read by the channel's `DeliveryWorker`. Unlike `events.py` it is not a contract with other
modules, but messages already on the bus must stay readable, so its payload only grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from townhall.notifications.domain import Channel
from townhall.platform.messaging import Envelope

# At most this many deliveries are asked for in one message: what one group commit accepted
# on a channel goes as one message, so the relay, the broker and the worker handle one
# message for all of them instead of one each.
MAX_ASKED = 100


def topic_for(channel: Channel) -> str:
    """Each channel has its own topic and consumer group of the same name."""
    return f"notifications.{channel.value}"


@dataclass(frozen=True)
class DeliveryRequested:
    """Asks `channel`'s worker for the delivery of each `(notification id, recipient)`. The
    recipient rides along so the worker can look the contact points up without reading the
    notification first; None in a message from before it did."""

    type: ClassVar[str] = "notifications.DeliveryRequested"
    channel: Channel
    asked: tuple[tuple[str, str | None], ...]

    @property
    def topic(self) -> str:
        return topic_for(self.channel)

    def envelope(self) -> Envelope:
        """One delivery asked: `{notification_id, channel, recipient?}`; several:
        `{channel, deliveries: [[notification id, recipient], ...]}`."""
        if not self.asked:
            raise ValueError("a DeliveryRequested asks for at least one delivery")
        first_id, first_recipient = self.asked[0]
        payload: dict[str, Any]
        if len(self.asked) == 1:
            payload = {"notification_id": first_id, "channel": self.channel.value}
            if first_recipient is not None:
                payload["recipient"] = first_recipient
        else:
            payload = {"channel": self.channel.value, "deliveries": [list(a) for a in self.asked]}
        return Envelope(type=self.type, key=first_id, payload=payload)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeliveryRequested:
        channel = Channel(payload["channel"])
        if "deliveries" in payload:
            asked = tuple((str(nid), str(recipient)) for nid, recipient in payload["deliveries"])
            return cls(channel, asked)
        recipient = payload.get("recipient")
        only = (str(payload["notification_id"]), None if recipient is None else str(recipient))
        return cls(channel, (only,))


def delivery_requests(wanted: Iterable[tuple[str, Channel, str]]) -> list[tuple[str, Envelope]]:
    """The outbox messages `(topic, envelope)` asking for each `(notification id, channel,
    recipient)` of `wanted`: one per channel for up to `MAX_ASKED` of them."""
    by_channel: dict[Channel, list[tuple[str, str | None]]] = {}
    for notification_id, channel, recipient in wanted:
        by_channel.setdefault(channel, []).append((notification_id, recipient))
    return [
        (topic_for(channel), DeliveryRequested(channel, tuple(asked[i : i + MAX_ASKED])).envelope())
        for channel, asked in by_channel.items()
        for i in range(0, len(asked), MAX_ASKED)
    ]
