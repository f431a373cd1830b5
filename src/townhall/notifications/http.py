"""Notifications' HTTP routes: requests and status, preferences, devices, the in-app inbox,
and the development outbox of the built-in sinks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from townhall.notifications.dev_outbox import DevOutbox
from townhall.notifications.schemas import (
    AcceptedOut,
    DeviceIn,
    DeviceOut,
    DeviceRemoval,
    DevicesOut,
    DevOutboxOut,
    IdempotencyKey,
    InboxCursor,
    InboxItemOut,
    InboxPageOut,
    MarkedOut,
    NotificationOut,
    NotifyRequest,
    PreferencesIn,
    PreferencesOut,
    UnreadOut,
    notification_out,
    preferences_out,
)
from townhall.notifications.service import (
    NotificationRequest,
    NotificationService,
    UserSettings,
)
from townhall.platform.auth import Principal
from townhall.platform.http import Problem, current_admin, current_user, rate_limit, require_json

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
    return notification_out(notification)


async def get_preferences(settings: Settings, principal: User) -> PreferencesOut:
    return preferences_out(await settings.preferences(principal.user_id))


async def put_preferences(
    body: PreferencesIn, settings: Settings, principal: User
) -> PreferencesOut:
    quiet = None
    if body.quiet_hours is not None:
        zone = body.quiet_hours.time_zone or await settings.time_zone_of(principal.user_id)
        start, end = body.quiet_hours.start, body.quiet_hours.end
        quiet = (time.fromisoformat(start), time.fromisoformat(end), zone)
    prefs = await settings.set_preferences(
        principal.user_id, [(o.category, o.channel) for o in body.opted_out], quiet
    )
    return preferences_out(prefs)


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
