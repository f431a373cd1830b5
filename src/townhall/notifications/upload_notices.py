"""What an owner is told when the scan of their upload ends: the notification that uploads'
`UploadScanned` asks for (in-app always; email too, which the email worker skips for an owner
without an address), naming the file and the result: clean; infected, with the detection; or
failed. Pure: an event's type and payload in, a `NotificationRequested` (or nothing) out.

Only uploads' `events.py` is read here, never its internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from townhall.notifications.events import NotificationRequested
from townhall.uploads import events as uploads

CATEGORY = "uploads"
CHANNELS = ("in_app", "email")
TEMPLATES = {"CLEAN": "upload_clean", "INFECTED": "upload_infected", "FAILED": "upload_failed"}
TOPICS = (uploads.TOPIC,)


def notice_for(message_type: str, payload: Mapping[str, Any]) -> NotificationRequested | None:
    """The notification a scan's result asks for; None for any other message on the topic."""
    if message_type != uploads.UploadScanned.type:
        return None
    event = uploads.UploadScanned.from_payload(dict(payload))
    template = TEMPLATES.get(event.status)
    if template is None:
        return None
    return NotificationRequested(
        recipient=event.owner_id,
        channels=list(CHANNELS),
        category=CATEGORY,
        template=template,
        data={
            "upload_id": event.upload_id,
            "filename": event.filename,
            "detection": event.detection or "",
        },
        # One notice per upload: a redelivered or republished result finds the key taken.
        idempotency_key=f"upload:{event.upload_id}:scanned",
    )
