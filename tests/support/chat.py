"""Chat clients for e2e tests: a WebSocket client that keeps every frame it is sent, and a raw
socket that does the WebSocket handshake and then only does what the test says (never answers
a ping, never reads unless asked)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from support.app import PASSWORD
from support.process import free_port, start_townhall

WS_PATH = "/api/v1/chat/ws"
Frame = dict[str, Any]


class Gateway:
    """One `townhall serve --modules chat` process on a port of its own, kept across restarts
    (so a client reconnects to the same address), ready once /readyz answers 200."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "TOWNHALL_PORT": str(self.port), "TOWNHALL_HOST": "127.0.0.1"}
        self.log = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        with open(self.log, "a") as out:
            self.process = start_townhall("serve", "--modules", "chat", env=self.env, log=out)

    async def ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.base, timeout=1) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log_tail()}"
                await asyncio.sleep(0.05)

    async def start(self) -> None:
        self.launch()
        await self.ready()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process dies with its sockets, its subscriptions and its presence."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, characters: int = 3000) -> str:
        return self.log.read_text()[-characters:] if self.log.exists() else ""


@dataclass
class Account:
    """A registered user and an access token of theirs."""

    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(base: str, username: str | None = None) -> Account:
    """Register a user on the edge at `base` (http://...) and sign them in."""
    username = username or f"c{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        made = await http.post(
            "/api/v1/auth/register", json={"username": username, "password": PASSWORD}
        )
        assert made.status_code == 201, made.text
        tokens = await http.post(
            "/api/v1/auth/token", json={"username": username, "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
        return Account(str(made.json()["id"]), username, tokens.json()["access_token"])


async def create_room(base: str, owner: Account, members: list[Account]) -> str:
    """POST /rooms as `owner` with `members`; the room's id."""
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        made = await http.post(
            "/api/v1/chat/rooms",
            headers=owner.headers,
            json={"name": f"r{uuid.uuid4().hex[:8]}", "members": [m.id for m in members]},
        )
        assert made.status_code == 201, made.text
        room = made.json()
        assert owner.id in room["members"], room
        return str(room["id"])


def ws_url(base: str, token: str | None = None) -> str:
    """The chat WebSocket URL of the edge at `base`, with `?token=` when one is given."""
    url = base.replace("http://", "ws://", 1) + WS_PATH
    return url if token is None else f"{url}?token={token}"


class ChatClient:
    """One WebSocket of one user. A reader task keeps every frame the server sends: `frames`
    (all of them, in order), `messages[room]` (the `message` frames of each room, in order),
    and a pool that `wait_for` takes matching frames from, oldest first."""

    def __init__(self, connection: ClientConnection, name: str) -> None:
        self.connection = connection
        self.name = name
        self.frames: list[Frame] = []
        self.messages: dict[str, list[Frame]] = defaultdict(list)
        self._pool: list[Frame] = []
        self._arrived = asyncio.Condition()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._reader = asyncio.create_task(self._read(), name=f"chat-client:{name}")

    @classmethod
    async def connect(
        cls,
        base: str,
        token: str | None,
        *,
        name: str = "client",
        in_header: bool = False,
        within: float = 20,
    ) -> ChatClient:
        """Open the chat socket at the edge `base` with `token` in the query (or in the
        Authorization header), answering the server's pings as a browser does."""
        headers = {"Authorization": f"Bearer {token}"} if in_header and token else None
        connection = await connect(
            ws_url(base, None if in_header else token),
            additional_headers=headers,
            open_timeout=within,
            ping_interval=None,  # the server pings; the client answers
            max_size=None,
            max_queue=None,
            close_timeout=2,
        )
        return cls(connection, name)

    async def _read(self) -> None:
        try:
            async for text in self.connection:
                frame = json.loads(text)
                async with self._arrived:
                    self.frames.append(frame)
                    if frame.get("op") == "message":
                        self.messages[str(frame["room"])].append(frame)
                    self._pool.append(frame)
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.wait_closed(), 5)
            # 1006 when the stream ended without a close frame (a killed gateway).
            self.close_code = self.connection.close_code
            self.close_reason = self.connection.close_reason
            async with self._arrived:
                self._arrived.notify_all()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def send(self, frame: Frame) -> None:
        await self.connection.send(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def wait_for(
        self, predicate: Callable[[Frame], bool], *, within: float = 20, what: str = ""
    ) -> Frame:
        """Take the oldest frame not taken yet that matches `predicate`, waiting up to
        `within` seconds for it. Fails naming `what` and the last frames on timeout or if
        the socket closes first."""

        def take() -> Frame | None:
            for index, frame in enumerate(self._pool):
                if predicate(frame):
                    return self._pool.pop(index)
            return None

        async def found() -> Frame:
            async with self._arrived:
                while True:
                    frame = take()
                    if frame is not None:
                        return frame
                    if self._reader.done():
                        raise AssertionError(
                            f"{self.name}: closed ({self.close_code} {self.close_reason!r}) "
                            f"before {what or 'the frame'}; last frames: {self.frames[-5:]}"
                        )
                    await self._arrived.wait()

        try:
            return await asyncio.wait_for(found(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no {what or 'matching frame'} in {within}s; last frames: "
                f"{self.frames[-5:]}"
            ) from None

    async def wait_until(
        self, condition: Callable[[], bool], *, within: float = 30, what: str = ""
    ) -> None:
        """Wait until `condition()` holds, checked after each frame that arrives."""

        async def holds() -> None:
            async with self._arrived:
                while not condition():
                    if self._reader.done():
                        raise AssertionError(
                            f"{self.name}: closed ({self.close_code}) before {what}; "
                            f"last frames: {self.frames[-5:]}"
                        )
                    await self._arrived.wait()

        try:
            await asyncio.wait_for(holds(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: not {what} in {within}s; last frames: {self.frames[-5:]}"
            ) from None

    async def join(self, room: str, since: int | None = None, *, within: float = 20) -> Frame:
        """Join `room` (with `since` when given); the `joined` frame."""
        frame: Frame = {"op": "join", "room": room}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.wait_for(
            lambda f: f.get("op") in ("joined", "error") and f.get("room", room) == room,
            within=within,
            what=f"joined {room}",
        )

    async def post(self, room: str, body: str, client_id: str | None = None) -> str:
        """Send a message without waiting for its ack; its client_id."""
        client_id = client_id or uuid.uuid4().hex
        await self.send({"op": "send", "room": room, "body": body, "client_id": client_id})
        return client_id

    async def ack_of(self, client_id: str, *, within: float = 20) -> Frame:
        return await self.wait_for(
            lambda f: f.get("op") == "ack" and f.get("client_id") == client_id,
            within=within,
            what=f"ack of {client_id}",
        )

    async def say(
        self, room: str, body: str, client_id: str | None = None, *, within: float = 20
    ) -> Frame:
        """Send a message and wait for its ack (an error frame fails)."""
        client_id = await self.post(room, body, client_id)
        answer = await self.wait_for(
            lambda f: (
                (f.get("op") == "ack" and f.get("client_id") == client_id) or f.get("op") == "error"
            ),
            within=within,
            what=f"ack of {client_id}",
        )
        assert answer["op"] == "ack", answer
        return answer

    async def ping(self, *, within: float = 20) -> None:
        """An app-level ping answered by a pong: the socket is open and served."""
        await self.send({"op": "ping"})
        await self.wait_for(lambda f: f.get("op") == "pong", within=within, what="pong")

    def seqs(self, room: str) -> list[int]:
        return [int(m["seq"]) for m in self.messages[room]]

    def last_seq(self, room: str) -> int:
        seqs = self.seqs(room)
        return max(seqs) if seqs else 0

    async def wait_closed(self, *, within: float = 30) -> tuple[int | None, str | None]:
        """Wait for the server to close the socket; its close code and reason."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: still open after {within}s; last frames: {self.frames[-5:]}"
            ) from None
        return self.close_code, self.close_reason

    async def close(self) -> None:
        try:
            await self.connection.close()
        except Exception:  # a dead peer: nothing left to close politely
            pass
        self._reader.cancel()
        try:
            await self._reader
        except asyncio.CancelledError:
            pass


class RawWebSocket:
    """A WebSocket client written by hand over a TCP socket: it does the handshake, then sends
    and reads frames only when told to, and never answers a ping. `receive_buffer` shrinks
    the socket's receive buffer (set before connecting, so the window stays small)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, base: str, token: str, *, receive_buffer: int | None = None, within: float = 20
    ) -> RawWebSocket:
        host, port = base.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), within)
        # A small limit: the stream stops reading the socket once 128 KiB wait unread, so what
        # the test does not read stays in the kernel buffers, as with a client that stalls.
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {WS_PATH}?token={token} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
        status = head.split(b"\r\n", 1)[0]
        assert b" 101 " in status + b" ", head.decode(errors="replace")
        return cls(reader, writer)

    async def send(self, frame: Frame) -> None:
        """One masked text frame, as a client must send."""
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 2**16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes] | None:
        """The next frame (opcode, payload), or None at the end of the stream."""
        try:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            if second & 0x80:
                mask = await self.reader.readexactly(4)
                data = await self.reader.readexactly(length)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            else:
                data = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return first & 0x0F, data

    async def read_json(self, *, within: float = 20) -> Frame:
        """The next text frame, decoded (pings and other control frames are skipped)."""

        async def next_text() -> Frame:
            while True:
                frame = await self.read_frame()
                assert frame is not None, "the server closed the stream"
                opcode, data = frame
                assert opcode != 0x8, f"closed: {close_of(data)}"
                if opcode == 0x1:
                    return dict(json.loads(data))

        return await asyncio.wait_for(next_text(), within)

    async def read_until_closed(self, *, within: float = 60) -> tuple[int | None, int, int]:
        """Read everything until the server closes: (close code or None when the stream just
        ended, text frames read, ping frames read). Pings are read, never answered."""

        async def drain() -> tuple[int | None, int, int]:
            texts = pings = 0
            while True:
                frame = await self.read_frame()
                if frame is None:
                    return None, texts, pings
                opcode, data = frame
                if opcode == 0x8:
                    return close_of(data)[0], texts, pings
                texts += opcode == 0x1
                pings += opcode == 0x9

        return await asyncio.wait_for(drain(), within)

    def close(self) -> None:
        self.writer.transport.abort()


def close_of(data: bytes) -> tuple[int | None, str]:
    """A close frame's payload: (code, reason)."""
    if len(data) < 2:
        return None, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode(errors="replace")


def assert_in_order_once(seqs: list[int], expected: list[int], who: str) -> None:
    """Every expected seq exactly once, in increasing order."""
    assert seqs == sorted(seqs), f"{who}: out of order: {seqs}"
    duplicates = sorted({s for s in seqs if seqs.count(s) > 1})
    assert not duplicates, f"{who}: received twice: {duplicates}"
    missing = sorted(set(expected) - set(seqs))
    assert not missing, f"{who}: missing {missing}"
    assert seqs == expected, f"{who}: {seqs} != {expected}"
