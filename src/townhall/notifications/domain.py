"""The notifications domain: notifications, per-channel deliveries, preferences and the decision
whether to deliver now, hold until quiet hours end, or skip. Pure Python: no I/O, no framework.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from townhall.platform import errors
from townhall.platform.clock import Clock
from townhall.platform.ids import new_id

# Categories a user cannot mute: they carry what the user must know (a new login, a reset code).
TRANSACTIONAL_CATEGORIES = frozenset({"security"})


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"


class PushPlatform(StrEnum):
    FCM = "fcm"
    APNS = "apns"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def is_final(self) -> bool:
        return self in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


class SkipReason(StrEnum):
    OPTED_OUT = "opted_out"
    NO_CONTACT_POINT = "no_contact_point"


# --- errors ---------------------------------------------------------------------------------


class NotificationError(errors.Invalid):
    """Base of the module's refusals of input: a 422 naming `field` (the class's own)."""

    field_name = "channels"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field=self.field_name)


class UnknownChannel(NotificationError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown channel {name!r}; use one of {', '.join(Channel)}")
        self.name = name


class UnknownTemplate(NotificationError):
    field_name = "template"

    def __init__(self, template: str, channel: Channel) -> None:
        super().__init__(f"no template {template!r} for channel {channel.value!r}")
        self.template = template
        self.channel = channel


class MissingTemplateVariable(NotificationError):
    """The data given to a template lacks a variable it uses (a 422, never a blank message)."""

    field_name = "template"

    def __init__(self, template: str, channel: Channel, variable: str) -> None:
        super().__init__(
            f"template {template!r} ({channel.value}) needs variable {variable!r}, "
            "which the data does not provide"
        )
        self.template = template
        self.channel = channel
        self.variable = variable


class InvalidTemplateData(NotificationError):
    """A template data value that is not a scalar: a template would print its Python form."""

    def __init__(self, key: str, value: object) -> None:
        self.field_name = f"data.{key}"
        kind = "an object" if isinstance(value, Mapping) else "a list"
        super().__init__(
            f"data {key!r} is {kind}; template data values are strings, numbers, booleans or null"
        )
        self.key = key


class TemplateError(NotificationError):
    """A template failed to render for a reason other than a missing variable."""

    field_name = "template"


class CannotMuteTransactional(NotificationError):
    field_name = "preferences"

    def __init__(self, category: str) -> None:
        super().__init__(f"category {category!r} is transactional and cannot be muted")
        self.category = category


class UnknownTimeZone(NotificationError):
    field_name = "preferences"

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown time zone {name!r}")
        self.name = name


class InvalidTransition(Exception):
    """A delivery was asked to move to a status it cannot reach from where it is."""

    def __init__(self, channel: Channel, current: DeliveryStatus, wanted: DeliveryStatus) -> None:
        super().__init__(f"{channel.value} delivery cannot go from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


class InvalidNotification(NotificationError):
    """A request that cannot become a notification (no channel, neither template nor body)."""


# --- provider outcomes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """The provider accepted the message; `provider_id` is its id for it (or our Message-ID)."""

    provider_id: str
    answer: str = ""


@dataclass(frozen=True)
class Transient:
    """Worth retrying later: busy, rate limited, unreachable, timed out. `retry_after` is the
    provider's own hint in seconds, when it gave one."""

    error: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Permanent:
    """Retrying cannot help: the address, number or token is refused. `token_dead` says a push
    token is gone for good and must be removed from the user's devices."""

    reason: str
    token_dead: bool = False


SendOutcome = Delivered | Transient | Permanent


# --- messages handed to senders -------------------------------------------------------------


def message_id_for(notification_id: uuid.UUID, channel: Channel, domain: str) -> str:
    """The deterministic RFC 5322 Message-ID of one notification on one channel.

    A resend of the same delivery carries the same id, so a duplicate that slips through the
    at-least-once window is recognisable (and collapsed by most mail clients).
    """
    return f"<{notification_id}.{channel.value}@{domain}>"


@dataclass(frozen=True)
class EmailMessage:
    notification_id: uuid.UUID
    to: str
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True)
class SmsMessage:
    notification_id: uuid.UUID
    to: str
    body: str


@dataclass(frozen=True)
class DeviceToken:
    platform: PushPlatform
    token: str


@dataclass(frozen=True)
class PushMessage:
    notification_id: uuid.UUID
    device: DeviceToken
    title: str
    body: str
    data: Mapping[str, str] = field(default_factory=dict)


OutgoingMessage = EmailMessage | SmsMessage | PushMessage


def compose_messages(
    notification_id: uuid.UUID,
    channel: Channel,
    contacts: ContactPoints,
    subject: str | None,
    body: str,
    html: str | None = None,
) -> tuple[OutgoingMessage, ...]:
    """What the channel's sender is handed: one email, one SMS, or one push per device.

    In-app has no sender (the inbox row is the delivery), and an unreachable channel has
    nothing to send: both give an empty tuple.
    """
    if channel is Channel.EMAIL and contacts.email:
        return (EmailMessage(notification_id, contacts.email, subject or "", body, html),)
    if channel is Channel.SMS and contacts.phone:
        return (SmsMessage(notification_id, contacts.phone, body),)
    if channel is Channel.PUSH:
        return tuple(
            PushMessage(notification_id, device, subject or "", body) for device in contacts.devices
        )
    return ()


# --- preferences, quiet hours, contact points -----------------------------------------------


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(name) from exc


@dataclass(frozen=True)
class QuietHours:
    """A daily window of wall-clock time in the user's zone during which delivery is held.

    `start` > `end` spans midnight (22:00-07:00). `start` == `end` is no window at all.
    """

    start: time
    end: time
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        zone(self.timezone)  # fail on construction, not at the first delivery

    def _contains(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        if self.start > self.end:
            return wall >= self.start or wall < self.end
        return False

    def held_until(self, now: datetime) -> datetime | None:
        """When delivery may go out if it is quiet time at `now` (UTC), else None.

        The answer is the first instant at which the user's wall clock reads `end` or later:
        on a spring-forward day whose `end` falls in the skipped hour, that is the transition.
        On a fall-back day that repeats `end`, it is the next time the clock reads it.
        """
        tz = zone(self.timezone)
        local = now.astimezone(tz)
        wall = local.time().replace(tzinfo=None)
        if not self._contains(wall):
            return None
        end_day = local.date()
        if self.start > self.end and wall >= self.start:
            end_day += timedelta(days=1)
        return _first_instant_at_or_after(end_day, self.end, tz, now)


def _first_instant_at_or_after(day: date, wall: time, tz: ZoneInfo, now: datetime) -> datetime:
    naive = datetime.combine(day, wall)
    before = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if before.astimezone(tz).replace(tzinfo=None) == naive:
        if before > now:
            return before  # the wall time exists (the first of two, if repeated)
        # `now` is in the repeated hour, past the first showing: wait for the second one.
        return naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    # A gap: `wall` never shows. fold=1 reads the time with the new offset, which lands before
    # the transition, fold=0 after it; the transition is between them. Bisect to the second.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(low, before), max(low, before)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


# `category` "*" in an opt-out mutes a channel for every non-transactional category.
ANY_CATEGORY = "*"


@dataclass(frozen=True)
class Preferences:
    """What a user wants: opt-outs per (category, channel) and quiet hours in their zone."""

    opted_out: frozenset[tuple[str, Channel]] = frozenset()
    quiet_hours: QuietHours | None = None

    def opt_out(self, category: str, channel: Channel) -> Preferences:
        if category in TRANSACTIONAL_CATEGORIES:
            raise CannotMuteTransactional(category)
        return Preferences(self.opted_out | {(category, channel)}, self.quiet_hours)

    def opt_in(self, category: str, channel: Channel) -> Preferences:
        return Preferences(self.opted_out - {(category, channel)}, self.quiet_hours)

    def is_muted(self, category: str, channel: Channel) -> bool:
        if category in TRANSACTIONAL_CATEGORIES:
            return False
        return (category, channel) in self.opted_out or (ANY_CATEGORY, channel) in self.opted_out


@dataclass(frozen=True)
class ContactPoints:
    """Where a user can be reached: identity's email and phone, and their push devices."""

    email: str | None = None
    phone: str | None = None
    devices: tuple[DeviceToken, ...] = ()

    def reachable_on(self, channel: Channel) -> bool:
        if channel is Channel.EMAIL:
            return bool(self.email)
        if channel is Channel.SMS:
            return bool(self.phone)
        if channel is Channel.PUSH:
            return bool(self.devices)
        return True  # the in-app inbox always exists


@dataclass(frozen=True)
class DeliverNow:
    pass


@dataclass(frozen=True)
class Hold:
    until: datetime


@dataclass(frozen=True)
class Skip:
    reason: SkipReason


Decision = DeliverNow | Hold | Skip


def decide(
    channel: Channel,
    category: str,
    preferences: Preferences,
    contacts: ContactPoints,
    now: datetime,
) -> Decision:
    """For this recipient, channel and preferences: deliver now, hold until T, or skip.

    Opt-out wins over everything; then a missing contact point; then quiet hours. In-app is
    never held (it is silent by nature), and transactional categories are neither muted nor
    held: a security alert that waits for the morning has lost its point.
    """
    if preferences.is_muted(category, channel):
        return Skip(SkipReason.OPTED_OUT)
    if not contacts.reachable_on(channel):
        return Skip(SkipReason.NO_CONTACT_POINT)
    if (
        channel is not Channel.IN_APP
        and category not in TRANSACTIONAL_CATEGORIES
        and preferences.quiet_hours is not None
    ):
        until = preferences.quiet_hours.held_until(now)
        if until is not None:
            return Hold(until)
    return DeliverNow()


# --- notifications and deliveries -----------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One try of one provider: when, which provider, what it answered, the error if any."""

    at: datetime
    provider: str
    outcome: SendOutcome

    @property
    def answer(self) -> str:
        match self.outcome:
            case Delivered(provider_id=provider_id, answer=answer):
                return answer or provider_id
            case Transient(error=error):
                return error
            case Permanent(reason=reason):
                return reason

    @property
    def error(self) -> str | None:
        return None if isinstance(self.outcome, Delivered) else self.answer


_ALLOWED: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset(
        {DeliveryStatus.SENDING, DeliveryStatus.SKIPPED, DeliveryStatus.FAILED}
    ),
    # SENDING -> SENDING: a worker killed mid-send leaves SENDING; another one takes over.
    DeliveryStatus.SENDING: frozenset(
        {
            DeliveryStatus.SENDING,
            DeliveryStatus.PENDING,
            DeliveryStatus.SENT,
            DeliveryStatus.FAILED,
        }
    ),
    DeliveryStatus.SENT: frozenset(),
    DeliveryStatus.SKIPPED: frozenset(),
    # A replay from the dead-letter queue sends a FAILED delivery again.
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.SENDING}),
}


@dataclass
class Delivery:
    """One notification on one channel, and the history of trying to deliver it."""

    notification_id: uuid.UUID
    channel: Channel
    status: DeliveryStatus = DeliveryStatus.PENDING
    skip_reason: SkipReason | None = None
    held_until: datetime | None = None
    provider_id: str | None = None
    last_error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def _move(self, wanted: DeliveryStatus) -> None:
        if wanted not in _ALLOWED[self.status]:
            raise InvalidTransition(self.channel, self.status, wanted)
        self.status = wanted

    @property
    def should_send(self) -> bool:
        """False once SENT or SKIPPED: a redelivered bus message must not send again."""
        return self.status not in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED)

    def skip(self, reason: SkipReason) -> None:
        self._move(DeliveryStatus.SKIPPED)
        self.skip_reason = reason

    def hold(self, until: datetime) -> None:
        if self.status is not DeliveryStatus.PENDING:
            raise InvalidTransition(self.channel, self.status, DeliveryStatus.PENDING)
        self.held_until = until

    def start_sending(self) -> None:
        self._move(DeliveryStatus.SENDING)
        self.held_until = None

    def record(self, at: datetime, provider: str, outcome: SendOutcome, *, final: bool) -> None:
        """Record one attempt. A transient outcome goes back to PENDING for a retry unless
        `final` (attempts exhausted), when it becomes FAILED like a permanent one."""
        if self.status is not DeliveryStatus.SENDING:
            raise InvalidTransition(self.channel, self.status, DeliveryStatus.SENT)
        self.attempts.append(Attempt(at, provider, outcome))
        match outcome:
            case Delivered(provider_id=provider_id):
                self._move(DeliveryStatus.SENT)
                self.provider_id = provider_id
                self.last_error = None
            case Permanent(reason=reason):
                self._move(DeliveryStatus.FAILED)
                self.last_error = reason
            case Transient(error=error):
                self._move(DeliveryStatus.FAILED if final else DeliveryStatus.PENDING)
                self.last_error = error


@dataclass(frozen=True)
class Content:
    """What to say: a template with its data, or a raw subject and body."""

    template: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None

    def __post_init__(self) -> None:
        if self.template is None and self.body is None:
            raise InvalidNotification("give either a template or a body")
        if self.template is not None and self.body is not None:
            raise InvalidNotification("give a template or a body, not both")


def check_template_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """`data` if every value is a scalar (string, number, boolean or None), else the first
    other value's key is named. How a template shows each kind: `templates.as_text`."""
    for key, value in data.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidTemplateData(str(key), value)
    return data


def parse_channels(names: Iterable[str]) -> tuple[Channel, ...]:
    """Channel names from a request, in order, without repeats; an unknown name is named."""
    channels: list[Channel] = []
    for name in names:
        try:
            channel = Channel(name)
        except ValueError:
            raise UnknownChannel(name) from None
        if channel not in channels:
            channels.append(channel)
    if not channels:
        raise InvalidNotification("give at least one channel")
    return tuple(channels)


@dataclass
class Notification:
    """A request to tell one user something on one or more channels."""

    id: uuid.UUID
    recipient: uuid.UUID
    category: str
    content: Content
    locale: str | None
    created_at: datetime
    deliveries: dict[Channel, Delivery]

    @classmethod
    def request(
        cls,
        *,
        recipient: uuid.UUID,
        channels: Iterable[Channel],
        category: str,
        content: Content,
        clock: Clock,
        locale: str | None = None,
        make_id: Callable[[], uuid.UUID] = new_id,
    ) -> Notification:
        notification_id = make_id()
        chosen = parse_channels(channels)
        return cls(
            id=notification_id,
            recipient=recipient,
            category=category,
            content=content,
            locale=locale,
            created_at=clock.now(),
            deliveries={channel: Delivery(notification_id, channel) for channel in chosen},
        )

    @property
    def status(self) -> DeliveryStatus:
        """The overall status: SENDING or PENDING while any channel is in flight; once all are
        final, FAILED if any failed, else SENT if any was sent, else SKIPPED."""
        statuses = {delivery.status for delivery in self.deliveries.values()}
        for status in (DeliveryStatus.SENDING, DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            if status in statuses:
                return status
        if DeliveryStatus.SENT in statuses:
            return DeliveryStatus.SENT
        return DeliveryStatus.SKIPPED
