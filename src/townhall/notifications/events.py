"""Notifications' public integration events (versioned; additive changes only).

Another module asks for a notification by publishing `NotificationRequested` on topic
`notifications` (through its outbox), or by calling the facade.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TOPIC = "notifications"


@dataclass(frozen=True)
class NotificationRequested:
    type = "notifications.NotificationRequested"
    version = 1

    recipient: str
    channels: list[str]
    category: str = "general"
    template: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    locale: str | None = None
    # Retries of the same request with the same key make one notification.
    idempotency_key: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)
