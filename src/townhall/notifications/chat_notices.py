"""What a user is told when someone mentions them in chat: the notification that chat's
`UserMentioned` asks for (in-app always; push and email too when they were offline), naming
the author and the room, with the message's excerpt. Pure: an event's type and payload in, a
`NotificationRequested` (or nothing) out.

Only chat's `events.py` is read here, never its internals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from townhall.chat import events as chat
from townhall.notifications.events import NotificationRequested

CATEGORY = "chat"
TEMPLATE = "chat_mention"
# Someone online sees the mention in the room: in-app is enough. Someone offline is reached
# where they are too; the workers skip email for a user without an address and push for one
# without a device (`no_contact_point`), as they do for the buyer's notices.
ONLINE_CHANNELS = ("in_app",)
OFFLINE_CHANNELS = ("in_app", "push", "email")


def _mentioned(payload: Mapping[str, Any]) -> NotificationRequested:
    event = chat.UserMentioned.from_payload(dict(payload))
    channels = ONLINE_CHANNELS if event.online else OFFLINE_CHANNELS
    return NotificationRequested(
        recipient=event.mentioned_id,
        channels=list(channels),
        category=CATEGORY,
        template=TEMPLATE,
        data={
            "author": event.author_username,
            "room": event.room_name,
            "room_id": event.room_id,
            "message_id": event.message_id,
            "seq": event.seq,
            "excerpt": event.excerpt,
        },
        # One notice per message and mentioned user: a redelivered or republished event
        # finds the key taken and creates nothing new.
        idempotency_key=f"mention:{event.message_id}:{event.mentioned_id}",
    )


NOTICES: Mapping[str, Callable[[Mapping[str, Any]], NotificationRequested | None]] = {
    chat.UserMentioned.type: _mentioned,
}
TOPICS = (chat.TOPIC,)


def notice_for(message_type: str, payload: Mapping[str, Any]) -> NotificationRequested | None:
    """The notification an event asks for; None for any other message on chat's topic."""
    notice = NOTICES.get(message_type)
    return None if notice is None else notice(payload)
