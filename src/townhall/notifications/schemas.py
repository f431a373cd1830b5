"""What notifications' HTTP routes take and give: request bodies with their input rules,
response models, and the conversions from domain objects to them."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import Header, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from townhall.notifications.domain import (
    Attempt,
    Channel,
    DeliveryStatus,
    Notification,
    Preferences,
    PushPlatform,
    SkipReason,
)
from townhall.platform import time_zones

# Printable ASCII, space included (a server strips the spaces around a header's value).
_IDEMPOTENCY_KEY = re.compile(r"[ -~]{1,255}")
# A line break or another control character: what a subject (an email header) cannot hold.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WALL_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _idempotency_key(value: str | None) -> str | None:
    if value is not None and not _IDEMPOTENCY_KEY.fullmatch(value):
        raise ValueError(
            "an Idempotency-Key is 1 to 255 printable ASCII characters"
            + (" (this one is empty)" if not value else "")
        )
    return value


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("a subject is one line: no CR, LF or other control character")
    return value


def _wall_time(value: str) -> str:
    if not _WALL_TIME.fullmatch(value):
        raise ValueError(
            "a wall-clock time HH:MM (00:00 to 23:59), without seconds or a UTC offset: "
            "the zone is time_zone"
        )
    return value


def _inbox_cursor(value: str | None) -> str | None:
    """A cursor is the `next_cursor` of an earlier page: an inbox item's id (a UUID)."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("not a cursor: pass back the next_cursor of a page") from None


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1 to 255 printable ASCII characters",
        json_schema_extra={"minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    ),
    AfterValidator(_idempotency_key),
]
Subject = Annotated[str, Field(max_length=998), AfterValidator(_one_line)]
WallTime = Annotated[
    str,
    Field(
        examples=["22:00"],
        description="HH:MM in time_zone, without seconds or a UTC offset",
        json_schema_extra={"pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
    ),
    AfterValidator(_wall_time),
]
TimeZone = Annotated[
    str,
    Field(max_length=64, examples=["Europe/Paris"], description=time_zones.HINT),
    AfterValidator(time_zones.check_time_zone),
]
# An instant as ISO 8601 with its UTC offset (`datetime.isoformat`).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
InboxCursor = Annotated[
    str | None,
    Query(max_length=64, description="the next_cursor of the previous page"),
    AfterValidator(_inbox_cursor),
]


class NotifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipient: Annotated[str, Field(min_length=1, max_length=64)]
    channels: Annotated[list[str], Field(min_length=1, max_length=4)]
    category: Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$")] = "general"
    template: Annotated[str, Field(max_length=64)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    subject: Subject | None = None
    body: Annotated[str, Field(max_length=100_000)] | None = None
    locale: Annotated[str, Field(max_length=16)] | None = None

    @model_validator(mode="after")
    def _template_or_body(self) -> NotifyRequest:
        if (self.template is None) == (self.body is None):
            raise ValueError("give either a template (with data) or a raw subject and body")
        return self


class OptOut(BaseModel):
    """One muted (category, channel); `*` mutes every category on the channel."""

    category: Annotated[str, Field(pattern=r"^([a-z0-9_.-]{1,64}|\*)$")]
    channel: Channel


class QuietHoursIn(BaseModel):
    start: WallTime
    end: WallTime
    time_zone: TimeZone | None = None  # default: the user's own (their profile's)


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opted_out: list[OptOut] = Field(default_factory=list)
    quiet_hours: QuietHoursIn | None = None


class DeviceIn(BaseModel):
    platform: PushPlatform
    token: Annotated[str, Field(min_length=8, max_length=512)]


class DeviceRemoval(BaseModel):
    token: Annotated[str, Field(min_length=8, max_length=512)]
    platform: PushPlatform | None = None


# --- what the routes answer -----------------------------------------------------------------


class AcceptedOut(BaseModel):
    id: str
    status: DeliveryStatus


class AttemptOut(BaseModel):
    at: Timestamp
    provider: str
    outcome: str = Field(description="delivered, transient or permanent")
    answer: str
    error: str | None


class ChannelDeliveryOut(BaseModel):
    status: DeliveryStatus
    skip_reason: SkipReason | None
    held_until: Timestamp | None
    provider_id: str | None
    last_error: str | None
    attempts: list[AttemptOut]


class NotificationOut(BaseModel):
    id: str
    recipient: str
    category: str
    status: DeliveryStatus
    created_at: Timestamp
    channels: dict[Channel, ChannelDeliveryOut]


class QuietHoursOut(BaseModel):
    start: str = Field(examples=["22:00"])
    end: str = Field(examples=["07:00"])
    time_zone: str


class PreferencesOut(BaseModel):
    opted_out: list[OptOut]
    quiet_hours: QuietHoursOut | None


class DeviceOut(BaseModel):
    platform: PushPlatform
    token: str


class DevicesOut(BaseModel):
    items: list[DeviceOut]


class InboxItemOut(BaseModel):
    id: str
    category: str
    subject: str | None
    body: str
    created_at: Timestamp
    read: bool


class InboxPageOut(BaseModel):
    items: list[InboxItemOut]
    next_cursor: str | None
    unread: int


class UnreadOut(BaseModel):
    unread: int


class MarkedOut(BaseModel):
    marked: int


class SinkEmailOut(BaseModel):
    to: str
    subject: str
    body: str
    message_id: str
    received_at: Timestamp


class SinkSmsOut(BaseModel):
    to: str
    body: str
    notification_id: str
    sent_at: Timestamp


class SinkPushOut(BaseModel):
    platform: PushPlatform
    token: str
    title: str
    body: str
    notification_id: str
    sent_at: Timestamp


class DevOutboxOut(BaseModel):
    items: list[SinkEmailOut]
    sms: list[SinkSmsOut]
    push: list[SinkPushOut]
    sinks: list[Channel]
    delivered_here: list[Channel]
    note: str | None


def _attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        at=attempt.at.isoformat(),
        provider=attempt.provider,
        outcome=type(attempt.outcome).__name__.lower(),
        answer=attempt.answer,
        error=attempt.error,
    )


def notification_out(notification: Notification) -> NotificationOut:
    return NotificationOut(
        id=str(notification.id),
        recipient=str(notification.recipient),
        category=notification.category,
        status=notification.status,
        created_at=notification.created_at.isoformat(),
        channels={
            channel: ChannelDeliveryOut(
                status=delivery.status,
                skip_reason=delivery.skip_reason,
                held_until=delivery.held_until.isoformat() if delivery.held_until else None,
                provider_id=delivery.provider_id,
                last_error=delivery.last_error,
                attempts=[_attempt_out(a) for a in delivery.attempts],
            )
            for channel, delivery in notification.deliveries.items()
        },
    )


def preferences_out(prefs: Preferences) -> PreferencesOut:
    quiet = prefs.quiet_hours
    return PreferencesOut(
        opted_out=[
            OptOut(category=category, channel=channel)
            for category, channel in sorted(prefs.opted_out)
        ],
        quiet_hours=(
            QuietHoursOut(
                start=quiet.start.strftime("%H:%M"),
                end=quiet.end.strftime("%H:%M"),
                time_zone=quiet.timezone,
            )
            if quiet
            else None
        ),
    )
