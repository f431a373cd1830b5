"""The peer of `bench/chat.py`: a python-socketio gateway as a Python team would write it, an
`AsyncServer` with the `AsyncRedisManager` (rooms across processes through Redis pub/sub) as an
ASGI app under uvicorn.

    BENCH_SIO_REDIS=redis://127.0.0.1:6379/0 BENCH_SIO_CHANNEL=bench-x \
        python -m uvicorn chat_sio_server:app --port 8100 --loop uvloop --ws auto

Events: `join` (room) enters the room and acks; `send` ({room, body}) emits `message` ({room,
body}) to the room, on every server. No authentication and no persistence: it does less per
message than Townhall's gateway, which stores each message with its seq before fan-out.
"""

from __future__ import annotations

import os
from typing import Any

import socketio

manager = socketio.AsyncRedisManager(
    os.environ.get("BENCH_SIO_REDIS", "redis://127.0.0.1:6379/0"),
    channel=os.environ.get("BENCH_SIO_CHANNEL", "socketio"),
)
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=manager,
    transports=["websocket"],
    cors_allowed_origins="*",
    logger=False,
    engineio_logger=False,
)
app = socketio.ASGIApp(sio)


@sio.event
async def join(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    return "ok"


@sio.event
async def send(sid: str, data: dict[str, Any]) -> None:
    await sio.emit("message", {"room": data["room"], "body": data["body"]}, room=data["room"])
