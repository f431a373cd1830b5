"""Notifications' HTTP routes: requests and status, preferences, devices, the in-app inbox,
and the development outbox of the built-in sinks."""

from __future__ import annotations

import re
import uuid
from datetime import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from townhall.notifications.dev_outbox import DevOutbox
from townhall.notifications.domain import Attempt, Notification
from townhall.notifications.service import (
    NotificationRequest,
    NotificationService,
    UserSettings,
)
from townhall.platform import time_zones
from townhall.platform.auth import Principal
from townhall.platform.http import Problem, current_admin, current_user, rate_limit, require_json

ChannelName = Literal["email", "sms", "push", "in_app"]

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


class AcceptedOut(BaseModel):
    id: str
    status: str


class OptOut(BaseModel):
    category: Annotated[str, Field(pattern=r"^([a-z0-9_.-]{1,64}|\*)$")]
    channel: ChannelName


class QuietHoursIn(BaseModel):
    start: WallTime
    end: WallTime
    time_zone: TimeZone | None = None  # default: the user's own (their profile's)


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opted_out: list[OptOut] = Field(default_factory=list)
    quiet_hours: QuietHoursIn | None = None


class DeviceIn(BaseModel):
    platform: Literal["fcm", "apns"]
    token: Annotated[str, Field(min_length=8, max_length=512)]


class DeviceRemoval(BaseModel):
    token: Annotated[str, Field(min_length=8, max_length=512)]
    platform: Literal["fcm", "apns"] | None = None


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "at": attempt.at.isoformat(),
        "provider": attempt.provider,
        "outcome": type(attempt.outcome).__name__.lower(),
        "answer": attempt.answer,
        "error": attempt.error,
    }


def notification_out(notification: Notification) -> dict[str, Any]:
    return {
        "id": str(notification.id),
        "recipient": str(notification.recipient),
        "category": notification.category,
        "status": notification.status.value,
        "created_at": notification.created_at.isoformat(),
        "channels": {
            channel.value: {
                "status": delivery.status.value,
                "skip_reason": delivery.skip_reason.value if delivery.skip_reason else None,
                "held_until": delivery.held_until.isoformat() if delivery.held_until else None,
                "provider_id": delivery.provider_id,
                "last_error": delivery.last_error,
                "attempts": [_attempt(a) for a in delivery.attempts],
            }
            for channel, delivery in notification.deliveries.items()
        },
    }


def routers(
    service: NotificationService,
    settings: UserSettings,
    dev_outbox: DevOutbox | None,
) -> tuple[list[APIRouter], list[APIRouter]]:
    """The API routers (under /api/v1) and the page routers (at the root)."""
    api = APIRouter(tags=["notifications"], dependencies=[rate_limit("default"), require_json])

    @api.post("/notifications", status_code=202, response_model=AcceptedOut)
    async def notify(
        body: NotifyRequest,
        response: Response,
        admin: Annotated[Principal, Depends(current_admin)],
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
        return AcceptedOut(id=accepted.id, status=accepted.status.value)

    @api.get("/notifications/{notification_id}")
    async def status(
        notification_id: str, principal: Annotated[Principal, Depends(current_user)]
    ) -> dict[str, Any]:
        """Overall and per-channel status with every attempt (the recipient or an admin)."""
        notification = await service.get(notification_id)
        if not principal.is_admin and str(notification.recipient) != principal.user_id:
            raise Problem(404, "notification-not-found", "Notification not found")
        return notification_out(notification)

    @api.get("/me/notification-preferences")
    async def get_preferences(
        principal: Annotated[Principal, Depends(current_user)],
    ) -> dict[str, Any]:
        return _preferences_out(await settings.preferences(principal.user_id))

    @api.put("/me/notification-preferences")
    async def put_preferences(
        body: PreferencesIn, principal: Annotated[Principal, Depends(current_user)]
    ) -> dict[str, Any]:
        quiet = None
        if body.quiet_hours is not None:
            zone = body.quiet_hours.time_zone or await _user_zone(service, principal)
            start, end = body.quiet_hours.start, body.quiet_hours.end
            quiet = (time.fromisoformat(start), time.fromisoformat(end), zone)
        prefs = await settings.set_preferences(
            principal.user_id, [(o.category, o.channel) for o in body.opted_out], quiet
        )
        return _preferences_out(prefs)

    @api.get("/me/devices")
    async def list_devices(
        principal: Annotated[Principal, Depends(current_user)],
    ) -> dict[str, Any]:
        devices = await settings.devices(principal.user_id)
        return {"items": [{"platform": d.platform.value, "token": d.token} for d in devices]}

    @api.post("/me/devices", status_code=201)
    async def add_device(
        body: DeviceIn, principal: Annotated[Principal, Depends(current_user)]
    ) -> dict[str, str]:
        device = await settings.add_device(principal.user_id, body.platform, body.token)
        return {"platform": device.platform.value, "token": device.token}

    @api.delete("/me/devices", status_code=204)
    async def remove_device(
        body: DeviceRemoval, principal: Annotated[Principal, Depends(current_user)]
    ) -> Response:
        await settings.remove_device(principal.user_id, body.token)
        return Response(status_code=204)

    @api.get("/me/inbox")
    async def inbox(
        principal: Annotated[Principal, Depends(current_user)],
        cursor: InboxCursor = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """The in-app inbox, newest first; pass `next_cursor` back as `cursor` for more."""
        items, next_cursor, unread = await settings.inbox(principal.user_id, cursor, limit)
        return {
            "items": [
                {
                    "id": item.id,
                    "category": item.category,
                    "subject": item.subject,
                    "body": item.body,
                    "created_at": item.created_at.isoformat(),
                    "read": item.read_at is not None,
                }
                for item in items
            ],
            "next_cursor": next_cursor,
            "unread": unread,
        }

    @api.get("/me/inbox/unread-count")
    async def unread(principal: Annotated[Principal, Depends(current_user)]) -> dict[str, int]:
        return {"unread": await settings.unread(principal.user_id)}

    @api.post("/me/inbox/read-all")
    async def read_all(principal: Annotated[Principal, Depends(current_user)]) -> dict[str, int]:
        return {"marked": await settings.mark_read(principal.user_id, None)}

    @api.post("/me/inbox/{item_id}/read", status_code=204)
    async def read_one(
        item_id: str, principal: Annotated[Principal, Depends(current_user)]
    ) -> Response:
        await settings.mark_read(principal.user_id, item_id)
        return Response(status_code=204)

    pages: list[APIRouter] = []
    if dev_outbox is not None and dev_outbox.enabled:

        @api.get("/dev/outbox")
        async def dev_outbox_api(
            _admin: Annotated[Principal, Depends(current_admin)],
        ) -> dict[str, Any]:
            """What this process's built-in sinks received: emails (`items`), `sms` and `push`
            (administrators; only when a sink stands in for a provider). `note` says where the
            messages went when the channel's delivery worker runs in another process."""
            return dev_outbox.snapshot()

        page = APIRouter(include_in_schema=False)

        @page.get("/dev/outbox")
        async def dev_outbox_page(request: Request) -> Response:
            # No token in a browser tab: the page is for the machine the server runs on.
            client = request.client.host if request.client else ""
            if client not in ("127.0.0.1", "::1", "localhost"):
                return JSONResponse({"detail": "local only"}, status_code=404)
            return HTMLResponse(dev_outbox.html())

        pages.append(page)

    return [api], pages


async def _user_zone(service: NotificationService, principal: Principal) -> str:
    return await service.time_zone_of(principal.user_id)


def _preferences_out(prefs: Any) -> dict[str, Any]:
    quiet = prefs.quiet_hours
    return {
        "opted_out": [
            {"category": category, "channel": channel.value}
            for category, channel in sorted(prefs.opted_out)
        ],
        "quiet_hours": (
            {
                "start": quiet.start.strftime("%H:%M"),
                "end": quiet.end.strftime("%H:%M"),
                "time_zone": quiet.timezone,
            }
            if quiet
            else None
        ),
    }
