"""Rows of the notifications tables to domain values and back, shared by the SQL stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from typing import Any

from townhall.notifications.domain import (
    Attempt,
    Channel,
    Delivered,
    Delivery,
    DeliveryStatus,
    Permanent,
    Preferences,
    QuietHours,
    SkipReason,
    Transient,
)

_OUTCOME_NAMES = {Delivered: "delivered", Transient: "transient", Permanent: "permanent"}


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite hands datetimes back naive; they are UTC
    return value


def preferences_of(
    opted_out: Any, quiet_start: str | None, quiet_end: str | None, time_zone: str | None
) -> Preferences:
    """Preferences from their row's columns (all None: the user never set any)."""
    quiet = None
    if quiet_start and quiet_end:
        quiet = QuietHours(
            time.fromisoformat(quiet_start), time.fromisoformat(quiet_end), time_zone or "UTC"
        )
    opted = frozenset((category, Channel(channel)) for category, channel in opted_out or ())
    return Preferences(opted_out=opted, quiet_hours=quiet)


def preferences_columns(prefs: Preferences) -> dict[str, Any]:
    quiet = prefs.quiet_hours
    return {
        "opted_out": sorted([category, channel.value] for category, channel in prefs.opted_out),
        "quiet_start": quiet.start.strftime("%H:%M") if quiet else None,
        "quiet_end": quiet.end.strftime("%H:%M") if quiet else None,
        "time_zone": quiet.timezone if quiet else None,
    }


def delivery_of(row: Any) -> Delivery:
    return Delivery(
        notification_id=uuid.UUID(row.notification_id),
        channel=Channel(row.channel),
        status=DeliveryStatus(row.status),
        skip_reason=SkipReason(row.skip_reason) if row.skip_reason else None,
        held_until=aware(row.held_until),
        provider_id=row.provider_id,
        last_error=row.last_error,
    )


def attempt_of(row: Any) -> Attempt:
    outcome: Delivered | Transient | Permanent
    if row.outcome == "delivered":
        outcome = Delivered(provider_id=row.answer)
    elif row.outcome == "transient":
        outcome = Transient(error=row.error or row.answer)
    else:
        outcome = Permanent(reason=row.error or row.answer)
    return Attempt(at=aware(row.at), provider=row.provider, outcome=outcome)  # type: ignore[arg-type]


def attempt_row(delivery: Delivery, attempt: Attempt) -> dict[str, Any]:
    return {
        "notification_id": str(delivery.notification_id),
        "channel": delivery.channel.value,
        "at": attempt.at,
        "provider": attempt.provider,
        "outcome": _OUTCOME_NAMES[type(attempt.outcome)],
        "answer": attempt.answer,
        "error": attempt.error,
    }
