"""The refusals of the notifications services (each a problem+json answer at the edge)."""

from __future__ import annotations

from townhall.platform import errors


class UnknownRecipient(errors.Invalid):
    code = "unknown-recipient"
    title = "Unknown recipient"


class IdempotencyKeyReused(errors.Invalid):
    code = "idempotency-key-reused"
    title = "Idempotency key reused with a different request"


class NotificationNotFound(errors.NotFound):
    code = "notification-not-found"
    title = "Notification not found"
