"""Chat's edge: the HTTP routes under /api/v1/chat and the WebSocket at /api/v1/chat/ws (the
protocol is in README.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect, WebSocketState

from townhall.chat import protocol
from townhall.chat.domain import Attachment, ChatMessage, Room, RoomSummary
from townhall.chat.gateway import Gateway
from townhall.chat.service import ChatService
from townhall.platform.auth import Principal
from townhall.platform.http import (
    Problem,
    current_user,
    rate_limit,
    require_json,
    websocket_user,
)

# --- schemas --------------------------------------------------------------------------------


UserId = Annotated[str, Field(min_length=1, max_length=36)]


class RoomIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100)]
    members: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=36)]], Field(max_length=5000)
    ] = []


class RoomOut(BaseModel):
    id: str
    name: str
    owner: str
    direct: bool
    members: list[str]
    created_at: datetime


class AttachmentOut(BaseModel):
    """A clean file (`status` CLEAN) with its name, type, size and `url`; before its scan
    ended, or when it failed, only `id` and `status`."""

    id: str
    status: str
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None
    url: str | None = None


class MessageOut(BaseModel):
    id: str
    room: str
    seq: int
    author: str
    body: str
    ts: datetime
    client_id: str
    attachments: list[AttachmentOut]
    edited_at: datetime | None = None
    deleted: bool = False


class RoomSummaryOut(RoomOut):
    last_message: MessageOut | None
    unread: int


class RoomsOut(BaseModel):
    items: list[RoomSummaryOut]


class HistoryOut(BaseModel):
    items: list[MessageOut]
    next_before: int | None  # pass as `before` for the next (older) page; null at the start


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Annotated[str, Field(min_length=1)]


class PresenceItem(BaseModel):
    user: str
    status: str


class PresenceOut(BaseModel):
    items: list[PresenceItem]


def room_out(room: Room) -> RoomOut:
    return RoomOut(
        id=room.id,
        name=room.name,
        owner=room.owner,
        direct=room.direct,
        members=list(room.members),
        created_at=room.created_at,
    )


def message_out(message: ChatMessage, shown: Mapping[str, Attachment]) -> MessageOut:
    return MessageOut(
        id=message.id,
        room=message.room,
        seq=message.seq,
        author=message.author,
        body=message.body,
        ts=message.created_at,
        client_id=message.client_id,
        attachments=[AttachmentOut(**a) for a in protocol.shown_attachments(message, shown)]
        if message.attachments
        else [],
        edited_at=message.edited_at,
        deleted=message.deleted,
    )


def summary_out(summary: RoomSummary, shown: Mapping[str, Attachment]) -> RoomSummaryOut:
    last = summary.last_message
    return RoomSummaryOut(
        **room_out(summary.room).model_dump(),
        last_message=message_out(last, shown) if last else None,
        unread=summary.unread,
    )


# --- dependencies ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # FastAPI hashes a dependency: by identity here
class _Installed:
    service: ChatService
    gateway: Gateway

    async def __call__(self, request: Request) -> None:
        request.state.chat = self


async def _installed(request: Request) -> _Installed:
    installed: _Installed = request.state.chat
    return installed


Chat = Annotated[_Installed, Depends(_installed)]
User = Annotated[Principal, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=100)]


# --- routes ---------------------------------------------------------------------------------


async def create_room(chat: Chat, user: User, body: RoomIn) -> RoomOut:
    """A room; the caller is its owner and a member."""
    return room_out(await chat.service.create_room(user.user_id, body.name, body.members))


async def list_rooms(chat: Chat, user: User) -> RoomsOut:
    """The caller's rooms, newest first, each with its last message and unread count."""
    summaries = await chat.service.rooms_of(user.user_id)
    shown = await chat.service.shown([s.last_message for s in summaries if s.last_message])
    return RoomsOut(items=[summary_out(s, shown) for s in summaries])


async def direct_room(chat: Chat, user: User, user_id: str, response: Response) -> RoomOut:
    """The 1:1 room with `user_id`: 201 when this made it, 200 when it existed."""
    room, made = await chat.service.direct(user.user_id, user_id)
    response.status_code = 201 if made else 200
    return room_out(room)


async def add_member(chat: Chat, user: User, room: str, user_id: str) -> RoomOut:
    """The owner adds a member."""
    return room_out(await chat.service.add_member(user.user_id, room, user_id))


async def remove_member(chat: Chat, user: User, room: str, user_id: str) -> Response:
    """The owner removes a member, or a member leaves."""
    await chat.service.remove_member(user.user_id, room, user_id)
    return Response(status_code=204)


async def history(
    chat: Chat,
    user: User,
    room: str,
    before: Annotated[int | None, Query(ge=1, le=protocol.MAX_SEQ)] = None,
    limit: Limit = 50,
) -> HistoryOut:
    """Messages with seq < `before` (the newest when absent), newest first."""
    found = await chat.service.history(user.user_id, room, before, limit)
    more = len(found) == limit and found[-1].seq > 1
    shown = await chat.service.shown(found)  # their attachments as they are now
    return HistoryOut(
        items=[message_out(m, shown) for m in found], next_before=found[-1].seq if more else None
    )


async def edit_message(
    chat: Chat, user: User, room: str, message_id: str, body: EditIn
) -> MessageOut:
    """The author edits their message; members are told (`edited`)."""
    edited = await chat.service.edit(user.user_id, room, message_id, body.body)
    return message_out(edited, await chat.service.shown([edited]))


async def delete_message(chat: Chat, user: User, room: str, message_id: str) -> Response:
    """The author deletes their message (a tombstone keeps its seq); members are told."""
    await chat.service.delete(user.user_id, room, message_id)
    return Response(status_code=204)


async def presence(chat: Chat, user: User, room: str) -> PresenceOut:
    """Every member of the room, online or offline."""
    found = await chat.service.presence_of(user.user_id, room)
    return PresenceOut(
        items=[PresenceItem(user=u, status="online" if on else "offline") for u, on in found]
    )


@dataclass(frozen=True, eq=False)
class _Socket:
    """The chat WebSocket (README.md: frames, error and close codes)."""

    gateway: Gateway

    async def __call__(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            principal = await websocket_user(websocket)
        except Problem as refused:
            reason = str(refused.detail or "unauthorized")[:120]
            await websocket.close(protocol.UNAUTHORIZED, reason)
            return

        async def close(code: int, reason: str) -> None:
            if websocket.application_state == WebSocketState.DISCONNECTED:
                return
            try:
                # A client that does not read keeps the close frame from being written.
                await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT)
            except TimeoutError:
                _abort(websocket)

        gateway = self.gateway
        connection = await gateway.open(principal.user_id, websocket.send_text, close)

        async def read() -> None:
            try:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    text = message.get("text")
                    if text is None:
                        text = (message.get("bytes") or b"").decode("utf-8", "replace")
                    connection.take(text)
            except (WebSocketDisconnect, RuntimeError):  # gone, or closed by us meanwhile
                pass
            finally:
                connection.ended()

        reader = asyncio.create_task(read())
        try:
            await connection.finished.wait()
        finally:
            await gateway.closed(connection)
            await connection.wait_closed()
            reader.cancel()


CLOSE_TIMEOUT = 10.0


def _abort(websocket: WebSocket) -> None:
    """Drop the TCP connection of a client that stopped reading: its close frame cannot be
    written, and the server would otherwise keep it (and its unsent frames) until TCP gives
    up. uvicorn's protocol object is the owner of the ASGI `send` callable, and its
    `transport` the connection; on another server this finds nothing and does nothing."""
    owner = getattr(getattr(websocket, "_send", None), "__self__", None)
    transport = getattr(owner, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()


def routers(service: ChatService, gateway: Gateway) -> list[APIRouter]:
    installed = _Installed(service, gateway)
    api = APIRouter(
        prefix="/chat",
        tags=["chat"],
        dependencies=[Depends(installed), rate_limit("default"), require_json],
    )
    api.add_api_route("/rooms", create_room, methods=["POST"], status_code=201)
    api.add_api_route("/rooms", list_rooms, methods=["GET"])
    api.add_api_route(
        "/direct/{user_id}",
        direct_room,
        methods=["POST"],
        responses={201: {"description": "The room was made"}},
    )
    api.add_api_route("/rooms/{room}/members/{user_id}", add_member, methods=["POST"])
    api.add_api_route(
        "/rooms/{room}/members/{user_id}", remove_member, methods=["DELETE"], status_code=204
    )
    api.add_api_route("/rooms/{room}/messages", history, methods=["GET"])
    api.add_api_route("/rooms/{room}/messages/{message_id}", edit_message, methods=["PATCH"])
    api.add_api_route(
        "/rooms/{room}/messages/{message_id}", delete_message, methods=["DELETE"], status_code=204
    )
    api.add_api_route("/rooms/{room}/presence", presence, methods=["GET"])
    ws = APIRouter(prefix="/chat", tags=["chat"])
    ws.add_api_websocket_route("/ws", _Socket(gateway))
    return [api, ws]
