"""Notifications' use cases, one file per job; each depends only on `notifications.ports`:

- `accepting.py`: `NotificationService`, accepting a request (the 202) and reading it back;
- `delivering.py`: `DeliveryWorker`, a channel's consumer that decides, claims, sends, records;
- `releasing.py`: `HeldReleaser`, putting deliveries held for quiet hours back on the bus;
- `settings.py`: `UserSettings`, a user's preferences, push devices and in-app inbox;
- `errors.py`: their refusals.
"""

from townhall.notifications.service.accepting import (
    Accepted,
    NotificationRequest,
    NotificationService,
)
from townhall.notifications.service.delivering import (
    DeliveryFailed,
    DeliveryWorker,
    TransientFailure,
)
from townhall.notifications.service.errors import (
    IdempotencyKeyReused,
    NotificationNotFound,
    UnknownRecipient,
)
from townhall.notifications.service.releasing import HeldReleaser
from townhall.notifications.service.settings import UserSettings

__all__ = [
    "Accepted",
    "DeliveryFailed",
    "DeliveryWorker",
    "HeldReleaser",
    "IdempotencyKeyReused",
    "NotificationNotFound",
    "NotificationRequest",
    "NotificationService",
    "TransientFailure",
    "UnknownRecipient",
    "UserSettings",
]
