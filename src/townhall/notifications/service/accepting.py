"""Accepting a notification request (the 202): validate, render, and record it with its
PENDING deliveries and the messages asking for them, in one unit of work. Delivery happens
later, through the bus; nothing accepted is lost."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from townhall.notifications.domain import (
    Channel,
    Content,
    DeliveryStatus,
    Notification,
    check_template_data,
    parse_channels,
)
from townhall.notifications.ports import (
    NewNotification,
    NotificationRequests,
    Recipients,
    Rendering,
)
from townhall.notifications.service.errors import (
    IdempotencyKeyReused,
    NotificationNotFound,
    UnknownRecipient,
)
from townhall.notifications.templates import TemplateRenderer
from townhall.platform.clock import Clock


@dataclass(frozen=True)
class NotificationRequest:
    recipient: str
    channels: Sequence[str]
    category: str = "general"
    template: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    locale: str | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            {
                "recipient": self.recipient,
                "channels": list(self.channels),
                "category": self.category,
                "template": self.template,
                "data": self.data,
                "subject": self.subject,
                "body": self.body,
                "locale": self.locale,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Accepted:
    id: str
    status: DeliveryStatus
    created: bool  # False when an idempotent retry returned the first answer


class NotificationService:
    def __init__(
        self,
        requests: NotificationRequests,
        recipients: Recipients,
        renderer: TemplateRenderer,
        clock: Clock,
    ) -> None:
        self._requests = requests
        self._recipients = recipients
        self._renderer = renderer
        self._clock = clock

    async def request(
        self,
        request: NotificationRequest,
        *,
        requested_by: str,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Validate, render and record; delivery happens later, through the bus."""
        fingerprint = request.fingerprint() if idempotency_key else None
        if idempotency_key:
            earlier = await self._earlier(requested_by, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        notification, renderings = await self._prepare(request)
        added = await self._requests.add(
            NewNotification(notification, renderings, requested_by, idempotency_key, fingerprint)
        )
        if not added:
            # An identical request raced us and won: answer as it was answered.
            assert idempotency_key is not None
            earlier = await self._earlier(requested_by, idempotency_key, fingerprint)
            if earlier is None:
                raise RuntimeError(
                    f"the Idempotency-Key {idempotency_key!r} is taken, but its notification"
                    " could not be read back"
                )
            return earlier
        return Accepted(str(notification.id), notification.status, created=True)

    async def get(self, notification_id: str) -> Notification:
        notification = await self._requests.get(notification_id)
        if notification is None:
            raise NotificationNotFound(f"no notification {notification_id}")
        return notification

    async def _earlier(
        self, requested_by: str, key: str, fingerprint: str | None
    ) -> Accepted | None:
        stored = await self._requests.by_idempotency_key(requested_by, key)
        if stored is None:
            return None
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                f"the Idempotency-Key {key!r} was used for a different request",
                field="Idempotency-Key",
            )
        notification = await self.get(stored.notification_id)
        return Accepted(stored.notification_id, notification.status, created=False)

    async def _prepare(
        self, request: NotificationRequest
    ) -> tuple[Notification, dict[Channel, Rendering]]:
        try:
            channels = parse_channels(request.channels)
            content = Content(
                template=request.template,
                data=dict(check_template_data(request.data)),
                subject=request.subject,
                body=request.body,
            )
            recipient_id = uuid.UUID(request.recipient)
        except ValueError:
            raise UnknownRecipient(
                f"{request.recipient!r} is not a user id", field="recipient"
            ) from None
        recipient = await self._recipients.find(request.recipient)
        if recipient is None:
            raise UnknownRecipient(f"no user {request.recipient}", field="recipient")
        locale = request.locale or recipient.locale
        renderings: dict[Channel, Rendering] = {}
        for channel in channels:
            if content.template is None:
                renderings[channel] = Rendering(content.subject, content.body or "")
                continue
            rendered = self._renderer.render(content.template, channel, locale, content.data)
            renderings[channel] = Rendering(rendered.subject, rendered.body, rendered.html)
        notification = Notification.request(
            recipient=recipient_id,
            channels=channels,
            category=request.category,
            content=content,
            clock=self._clock,
            locale=locale,
        )
        return notification, renderings
