"""Notifications' HTTP routes: requests and status, preferences, devices, the in-app inbox,
and the development outbox of the built-in sinks."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from townhall.notifications.dev_outbox import DevOutbox
from townhall.notifications.domain import (
    Attempt,
    Channel,
    DeliveryStatus,
    Notification,
    Preferences,
    PushPlatform,
    SkipReason,
)
from townhall.notifications.service import (
    NotificationRequest,
    NotificationService,
    UserSettings,
)
from townhall.platform import time_zones
from townhall.platform.auth import Principal
from townhall.platform.http import Problem, current_admin, current_user, rate_limit, require_json

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


def _notification_out(notification: Notification) -> NotificationOut:
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


def _preferences_out(prefs: Preferences) -> PreferencesOut:
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


# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    """This installation's services, put on each request by `routers`' routers (a router
    dependency runs before the route's own), where the dependencies below find them."""

    service: NotificationService
    settings: UserSettings
    dev_outbox: DevOutbox | None

    async def __call__(self, request: Request) -> None:
        request.state.notifications = self


def _installed(request: Request) -> _Installed:
    installed: _Installed = request.state.notifications
    return installed


# Coroutines, like the edge's own dependencies: FastAPI runs a plain `def` in a thread pool.
async def notification_service(request: Request) -> NotificationService:
    return _installed(request).service


async def user_settings(request: Request) -> UserSettings:
    return _installed(request).settings


async def dev_outbox(request: Request) -> DevOutbox:
    outbox = _installed(request).dev_outbox
    assert outbox is not None, "the outbox routes are mounted only with an outbox"
    return outbox


Service = Annotated[NotificationService, Depends(notification_service)]
Settings = Annotated[UserSettings, Depends(user_settings)]
Outbox = Annotated[DevOutbox, Depends(dev_outbox)]
User = Annotated[Principal, Depends(current_user)]
Admin = Annotated[Principal, Depends(current_admin)]


# --- routes ---------------------------------------------------------------------------------


async def notify(
    body: NotifyRequest,
    response: Response,
    service: Service,
    admin: Admin,
    idempotency_key: IdempotencyKey = None,
) -> AcceptedOut:
    """Accept a notification for delivery (administrators). Returns at once."""
    accepted = await service.request(
        NotificationRequest(**body.model_dump()),
        requested_by=f"user:{admin.user_id}",
        idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"/api/v1/notifications/{accepted.id}"
    if not accepted.created:
        response.headers["Idempotent-Replayed"] = "true"
    return AcceptedOut(id=accepted.id, status=accepted.status)


async def notification_status(
    notification_id: str, service: Service, principal: User
) -> NotificationOut:
    """Overall and per-channel status with every attempt (the recipient or an admin)."""
    notification = await service.get(notification_id)
    if not principal.is_admin and str(notification.recipient) != principal.user_id:
        raise Problem(404, "notification-not-found", "Notification not found")
    return _notification_out(notification)


async def get_preferences(settings: Settings, principal: User) -> PreferencesOut:
    return _preferences_out(await settings.preferences(principal.user_id))


async def put_preferences(
    body: PreferencesIn, service: Service, settings: Settings, principal: User
) -> PreferencesOut:
    quiet = None
    if body.quiet_hours is not None:
        zone = body.quiet_hours.time_zone or await service.time_zone_of(principal.user_id)
        start, end = body.quiet_hours.start, body.quiet_hours.end
        quiet = (time.fromisoformat(start), time.fromisoformat(end), zone)
    prefs = await settings.set_preferences(
        principal.user_id, [(o.category, o.channel) for o in body.opted_out], quiet
    )
    return _preferences_out(prefs)


async def list_devices(settings: Settings, principal: User) -> DevicesOut:
    devices = await settings.devices(principal.user_id)
    return DevicesOut(items=[DeviceOut(platform=d.platform, token=d.token) for d in devices])


async def add_device(body: DeviceIn, settings: Settings, principal: User) -> DeviceOut:
    device = await settings.add_device(principal.user_id, body.platform, body.token)
    return DeviceOut(platform=device.platform, token=device.token)


async def remove_device(body: DeviceRemoval, settings: Settings, principal: User) -> Response:
    await settings.remove_device(principal.user_id, body.token)
    return Response(status_code=204)


async def inbox(
    settings: Settings,
    principal: User,
    cursor: InboxCursor = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> InboxPageOut:
    """The in-app inbox, newest first; pass `next_cursor` back as `cursor` for more."""
    items, next_cursor, unread = await settings.inbox(principal.user_id, cursor, limit)
    return InboxPageOut(
        items=[
            InboxItemOut(
                id=item.id,
                category=item.category,
                subject=item.subject,
                body=item.body,
                created_at=item.created_at.isoformat(),
                read=item.read_at is not None,
            )
            for item in items
        ],
        next_cursor=next_cursor,
        unread=unread,
    )


async def unread_count(settings: Settings, principal: User) -> UnreadOut:
    return UnreadOut(unread=await settings.unread(principal.user_id))


async def read_all(settings: Settings, principal: User) -> MarkedOut:
    return MarkedOut(marked=await settings.mark_read(principal.user_id, None))


async def read_one(item_id: str, settings: Settings, principal: User) -> Response:
    await settings.mark_read(principal.user_id, item_id)
    return Response(status_code=204)


async def dev_outbox_api(outbox: Outbox, _admin: Admin) -> DevOutboxOut:
    """What this process's built-in sinks received: emails (`items`), `sms` and `push`
    (administrators; only when a sink stands in for a provider). `note` says where the
    messages went when the channel's delivery worker runs in another process."""
    return DevOutboxOut.model_validate(outbox.snapshot())


async def dev_outbox_page(request: Request, outbox: Outbox) -> Response:
    # No token in a browser tab: the page is for the machine the server runs on.
    client = request.client.host if request.client else ""
    if client not in ("127.0.0.1", "::1", "localhost"):
        return JSONResponse({"detail": "local only"}, status_code=404)
    return HTMLResponse(outbox.html())


def routers(
    service: NotificationService,
    settings: UserSettings,
    outbox: DevOutbox | None,
) -> tuple[list[APIRouter], list[APIRouter]]:
    """The API routers (under /api/v1) and the page routers (at the root)."""
    installed = Depends(_Installed(service, settings, outbox))
    api = APIRouter(
        tags=["notifications"],
        dependencies=[installed, rate_limit("default"), require_json],
    )
    api.add_api_route(
        "/notifications",
        notify,
        methods=["POST"],
        status_code=202,
        response_model=AcceptedOut,
        name="notify",
    )
    api.add_api_route(
        "/notifications/{notification_id}",
        notification_status,
        methods=["GET"],
        response_model=NotificationOut,
        name="status",
    )
    api.add_api_route(
        "/me/notification-preferences",
        get_preferences,
        methods=["GET"],
        response_model=PreferencesOut,
    )
    api.add_api_route(
        "/me/notification-preferences",
        put_preferences,
        methods=["PUT"],
        response_model=PreferencesOut,
    )
    api.add_api_route("/me/devices", list_devices, methods=["GET"], response_model=DevicesOut)
    api.add_api_route(
        "/me/devices", add_device, methods=["POST"], status_code=201, response_model=DeviceOut
    )
    api.add_api_route("/me/devices", remove_device, methods=["DELETE"], status_code=204)
    api.add_api_route("/me/inbox", inbox, methods=["GET"], response_model=InboxPageOut)
    api.add_api_route(
        "/me/inbox/unread-count",
        unread_count,
        methods=["GET"],
        response_model=UnreadOut,
        name="unread",
    )
    api.add_api_route("/me/inbox/read-all", read_all, methods=["POST"], response_model=MarkedOut)
    api.add_api_route("/me/inbox/{item_id}/read", read_one, methods=["POST"], status_code=204)
    pages: list[APIRouter] = []
    if outbox is not None and outbox.enabled:
        api.add_api_route(
            "/dev/outbox", dev_outbox_api, methods=["GET"], response_model=DevOutboxOut
        )
        page = APIRouter(include_in_schema=False, dependencies=[installed])
        page.add_api_route("/dev/outbox", dev_outbox_page, methods=["GET"])
        pages.append(page)
    return [api], pages
