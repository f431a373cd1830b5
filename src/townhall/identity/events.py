"""Identity's public integration events (versioned; additive changes only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

TOPIC = "identity"


@dataclass(frozen=True)
class UserRegistered:
    type = "identity.UserRegistered"
    version = 1

    user_id: str
    username: str
    email: str | None
    phone: str | None
    locale: str
    occurred_at: datetime

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["occurred_at"] = self.occurred_at.isoformat()
        return payload
