"""Chat's public integration events (versioned; additive changes only), on topic `chat`.

Notifications turns `UserMentioned` into a notification: in-app always, push and email only
when the mentioned user was offline on every gateway when the message was stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

TOPIC = "chat"


@dataclass(frozen=True)
class UserMentioned:
    type = "chat.UserMentioned"
    version = 1

    message_id: str
    room_id: str
    room_name: str
    seq: int
    author_id: str
    author_username: str
    mentioned_id: str
    excerpt: str  # the message's first 200 characters
    online: bool  # whether the mentioned user had a live connection on any gateway then

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> UserMentioned:
        fields = cls.__dataclass_fields__
        return cls(**{name: value for name, value in payload.items() if name in fields})
