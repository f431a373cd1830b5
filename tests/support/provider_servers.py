"""Real local servers standing in for notification providers, answering as scripted.

`ScriptedHttpServer`: a Starlette app on uvicorn (HTTP/1.1) on a free port, for Twilio and FCM.
`ScriptedH2Server`: a minimal HTTP/2 server (h2c, prior knowledge) on asyncio, for APNs.
Both record every request and answer with the next scripted `Reply` (then the default); a
subclass of `ScriptedHttpServer` may answer from the request instead (`support.stripe_server`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import uvicorn
from starlette.requests import Request
from starlette.responses import Response


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    http_version: str


class ScriptedHttpServer:
    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self.replies = list(replies)
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        recorded = Recorded(
            request.method,
            request.url.path,
            dict(request.headers),
            await request.body(),
            scope.get("http_version", "1.1"),
        )
        self.requests.append(recorded)
        reply = await self.answer(recorded)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        response = Response(
            reply.encoded(), reply.status, reply.headers, media_type="application/json"
        )
        await response(scope, receive, send)

    async def answer(self, request: Recorded) -> Reply:
        """The next scripted reply, then the default; a subclass may answer from the request."""
        return self.replies.pop(0) if self.replies else self.default

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


class _H2Protocol(asyncio.Protocol):
    def __init__(self, server: ScriptedH2Server) -> None:
        self._server = server
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections += 1
        self._conn.initiate_connection()
        transport.write(self._conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        for event in self._conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = {str(k): str(v) for k, v in event.headers}
                self._streams[event.stream_id] = (headers, bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self._streams[event.stream_id][1].extend(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                asyncio.get_running_loop().create_task(self._answer(event.stream_id))
        self._transport.write(self._conn.data_to_send())

    async def _answer(self, stream_id: int) -> None:
        assert self._transport is not None
        headers, body = self._streams.pop(stream_id)
        self._server.requests.append(
            Recorded(headers[":method"], headers[":path"], headers, bytes(body), "2")
        )
        reply = self._server.replies.pop(0) if self._server.replies else self._server.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if self._transport.is_closing():
            return
        payload = reply.encoded()
        response_headers = [
            (":status", str(reply.status)),
            ("content-length", str(len(payload))),
            ("content-type", "application/json"),
            *reply.headers.items(),
        ]
        self._conn.send_headers(stream_id, response_headers, end_stream=not payload)
        if payload:
            self._conn.send_data(stream_id, payload, end_stream=True)
        self._transport.write(self._conn.data_to_send())


class ScriptedH2Server:
    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self.replies = list(replies)
        self.default = default or Reply()
        self.requests: list[Recorded] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _H2Protocol(self), "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
